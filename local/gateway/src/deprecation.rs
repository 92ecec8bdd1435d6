//! EC2's image deprecation, which moto lacks: what EnableImageDeprecation accepts and stores, and
//! how DescribeImages shows it. An image id names one image in one region (a copy in another
//! region has its own id), so deprecations are kept per region and image id.
//!
//! The rules, from EC2's API reference and user guide ("Deprecate an AMI"): DeprecateAt is
//! required, can't be in the past, and at most 10 years from now; EC2 rounds its seconds to the
//! nearest minute; only the AMI's owner may deprecate it or cancel its deprecation; the owner's
//! DescribeImages shows every image it owns, with `deprecationTime`, deprecated or not; an
//! image of another account whose deprecation time has come is left out unless the request
//! says `IncludeDeprecated` or names the image by id.

use chrono::{DateTime, DurationRound, Months, SecondsFormat, TimeDelta, Utc};
use std::collections::{BTreeMap, HashMap};

/// Whether `id` has an AMI id's form: `ami-` and 8 or 17 lowercase hex digits.
pub fn is_image_id(id: &str) -> bool {
    id.strip_prefix("ami-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// EnableImageDeprecation's `DeprecateAt` as EC2 keeps it, or the error EC2 answers
/// (code, message).
pub fn deprecate_at(
    form: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, (&'static str, String)> {
    let Some(raw) = form.get("DeprecateAt") else {
        return Err((
            "MissingParameter",
            "The request must contain the parameter DeprecateAt".into(),
        ));
    };
    let invalid = |why: &str| {
        (
            "InvalidParameterValue",
            format!("Value ({raw}) for parameter DeprecateAt is invalid. {why}"),
        )
    };
    let at = DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid("Expected a date and time in the format YYYY-MM-DDTHH:MM:SSZ."))?;
    // "You can't specify a date in the past": the date as specified, before rounding.
    if at < now {
        return Err(invalid("The deprecation date can't be in the past."));
    }
    if now.checked_add_months(Months::new(120)).is_some_and(|limit| at > limit) {
        return Err(invalid("The deprecation date can't be more than 10 years from now."));
    }
    Ok(at.duration_round(TimeDelta::minutes(1)).unwrap_or(at))
}

/// A deprecation time as DescribeImages shows it: `2021-05-10T13:17:00.000Z`.
pub fn shown(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// (region, image id) → the time the image is deprecated from.
#[derive(Debug, Default)]
pub struct Deprecations(HashMap<(String, String), DateTime<Utc>>);

impl Deprecations {
    pub fn set(&mut self, region: &str, image: &str, at: DateTime<Utc>) {
        self.0.insert((region.to_owned(), image.to_owned()), at);
    }

    pub fn forget(&mut self, region: &str, image: &str) {
        self.0.remove(&(region.to_owned(), image.to_owned()));
    }

    /// The deprecations of `region`'s images: image id → time.
    pub fn in_region(&self, region: &str) -> HashMap<String, DateTime<Utc>> {
        self.0
            .iter()
            .filter(|((r, _), _)| r == region)
            .map(|((_, image), at)| (image.clone(), *at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn form(at: &str) -> BTreeMap<String, String> {
        [("DeprecateAt".to_owned(), at.to_owned())].into()
    }

    #[test]
    fn image_ids() {
        assert!(is_image_id("ami-0123456789abcdef0"));
        assert!(is_image_id("ami-12345678"));
        assert!(!is_image_id("ami-0123456789ABCDEF0"));
        assert!(!is_image_id("ami-123"));
        assert!(!is_image_id("snap-0123456789abcdef0"));
        assert!(!is_image_id("ami-0123456789abcdefg"));
    }

    #[test]
    fn deprecate_at_rounds_to_the_nearest_minute() {
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let at = |s: &str| deprecate_at(&form(s), now).map(shown);
        assert_eq!(at("2026-12-04T10:15:29Z").unwrap(), "2026-12-04T10:15:00.000Z");
        assert_eq!(at("2026-12-04T10:15:30Z").unwrap(), "2026-12-04T10:16:00.000Z");
        assert_eq!(at("2026-12-04T10:15:29.999Z").unwrap(), "2026-12-04T10:15:00.000Z");
        assert_eq!(at("2026-12-04T11:15:10+01:00").unwrap(), "2026-12-04T10:15:00.000Z");
    }

    #[test]
    fn deprecate_at_is_required_not_past_and_within_ten_years() {
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        assert_eq!(deprecate_at(&BTreeMap::new(), now).unwrap_err().0, "MissingParameter");
        let past = deprecate_at(&form("2026-12-04T09:59:59Z"), now).unwrap_err();
        assert_eq!(past.0, "InvalidParameterValue");
        assert!(past.1.contains("past"), "{}", past.1);
        assert!(deprecate_at(&form("2026-12-04T10:00:00Z"), now).is_ok());
        assert!(deprecate_at(&form("2036-12-04T10:00:00Z"), now).is_ok());
        assert_eq!(
            deprecate_at(&form("2036-12-04T10:01:00Z"), now).unwrap_err().0,
            "InvalidParameterValue"
        );
        assert_eq!(
            deprecate_at(&form("tomorrow"), now).unwrap_err().0,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn kept_per_region_and_image() {
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 10, 15, 0).unwrap();
        let mut d = Deprecations::default();
        d.set("us-east-1", "ami-1", at);
        assert_eq!(d.in_region("us-east-1").get("ami-1"), Some(&at));
        assert!(d.in_region("eu-west-1").is_empty());
        d.forget("eu-west-1", "ami-1");
        assert_eq!(
            d.in_region("us-east-1").get("ami-1").map(|t| shown(*t)).as_deref(),
            Some("2026-12-04T10:15:00.000Z")
        );
        d.forget("us-east-1", "ami-1");
        assert!(d.in_region("us-east-1").is_empty());
    }
}
