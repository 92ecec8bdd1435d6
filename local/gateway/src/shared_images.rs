//! AMIs other accounts made public or shared with the caller, in the caller's DescribeImages,
//! as EC2 shows them: moto keeps each account's images apart, so the gateway asks the other
//! accounts it knows for what they let the caller launch, applies the request's owner filter
//! itself (moto ignores Owners when ImageIds are given; EC2 does not), and adds those images to
//! the caller's answer. Where moto differs from EC2 on what an image shows, the answer is
//! mended: deprecation (kept by the gateway, see `deprecation`) and disabled images (left out
//! by default; a disabled image is shared with no one).

use crate::http::{xml_elements, xml_unescape};
use crate::iam::lookups::Moto;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// The `<item>`s directly inside `<imagesSet>`, each whole (nested items included).
pub fn image_items(xml: &str) -> Vec<&str> {
    let Some(start) = xml.find("<imagesSet>") else {
        return Vec::new();
    };
    let body = &xml[start + "<imagesSet>".len()..];
    let (mut out, mut depth, mut item_start, mut i) = (Vec::new(), 0usize, 0usize, 0usize);
    while i < body.len() {
        let rest = &body[i..];
        if rest.starts_with("<item>") {
            if depth == 0 {
                item_start = i;
            }
            depth += 1;
            i += "<item>".len();
        } else if rest.starts_with("</item>") {
            depth = depth.saturating_sub(1);
            i += "</item>".len();
            if depth == 0 {
                out.push(&body[item_start..i]);
            }
        } else if rest.starts_with("</imagesSet>") && depth == 0 {
            break;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

pub fn field(item: &str, tag: &str) -> Option<String> {
    xml_elements(item, tag).first().map(|s| xml_unescape(s))
}

/// The request's owners with `self` as the caller's account; empty when it names none.
fn owners(form: &BTreeMap<String, String>, caller: &str) -> Vec<String> {
    form.iter()
        .filter(|(k, _)| k.starts_with("Owner."))
        .map(|(_, v)| if v == "self" { caller.to_owned() } else { v.clone() })
        .collect()
}

/// The images of `others` the caller may launch (public, or shared with its account) that the
/// request asks for, as `<item>` XML.
pub async fn visible_from_others(
    moto: &Moto,
    region: &str,
    caller: &str,
    others: &[String],
    form: &BTreeMap<String, String>,
) -> Vec<String> {
    let wanted_owners = owners(form, caller);
    let mut params: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| !k.starts_with("Owner.") && !k.starts_with("ExecutableBy."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.retain(|(k, _)| k != "Action" && k != "Version");
    params.push(("Action".into(), "DescribeImages".into()));
    params.push(("Version".into(), "2016-11-15".into()));
    let mut out = Vec::new();
    for account in others.iter().filter(|a| a.as_str() != caller) {
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // An account without the images asked for by id answers InvalidAMIID: none of them there.
        let Ok(xml) = moto.query_ec2(region, account, &refs).await else {
            continue;
        };
        for item in image_items(&xml) {
            // DisableImage makes an image private and takes every launch permission away.
            if field(item, "imageState").as_deref() == Some("disabled") {
                continue;
            }
            let owner = field(item, "imageOwnerId").unwrap_or_default();
            if !wanted_owners.is_empty() && !wanted_owners.contains(&owner) {
                continue;
            }
            let public = field(item, "isPublic").as_deref() == Some("true");
            let shared = match field(item, "imageId") {
                Some(id) if !public => moto
                    .launch_permission_users(region, account, &id)
                    .await
                    .contains(&caller.to_owned()),
                _ => false,
            };
            if public || shared {
                out.push(item.to_owned());
            }
        }
    }
    out
}

/// The caller's own answer with only the images of the owners the request names (moto ignores
/// Owners when ImageIds are given; EC2 applies both).
pub fn own_filtered(xml: &str, form: &BTreeMap<String, String>, caller: &str) -> String {
    let wanted = owners(form, caller);
    if wanted.is_empty() {
        return xml.to_owned();
    }
    let (Some(start), Some(end)) = (xml.find("<imagesSet>"), xml.rfind("</imagesSet>")) else {
        return xml.to_owned();
    };
    let kept: String = image_items(xml)
        .into_iter()
        .filter(|item| field(item, "imageOwnerId").is_some_and(|o| wanted.contains(&o)))
        .collect();
    format!(
        "{}<imagesSet>{kept}</imagesSet>{}",
        &xml[..start],
        &xml[end + "</imagesSet>".len()..]
    )
}

/// A DescribeImages answer as EC2 gives it: each image with a deprecation (`deprecations`:
/// image id → time, in the answer's region) shows its `deprecationTime`; an image of another
/// account than the caller's whose deprecation time has come only when the request says
/// `IncludeDeprecated` or names images by id (the owner sees all of its own); disabled images
/// only when the request says `IncludeDisabled` (moto shows them always).
pub fn as_ec2_shows(
    xml: &str,
    form: &BTreeMap<String, String>,
    caller: &str,
    deprecations: &HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    let include_disabled = form.get("IncludeDisabled").is_some_and(|v| v == "true");
    let include_deprecated =
        form.get("IncludeDeprecated").is_some_and(|v| v == "true") || form.keys().any(|k| k.starts_with("ImageId."));
    let (Some(start), Some(end)) = (xml.find("<imagesSet>"), xml.rfind("</imagesSet>")) else {
        return xml.to_owned();
    };
    let kept: String = image_items(xml)
        .into_iter()
        .filter(|item| include_disabled || field(item, "imageState").as_deref() != Some("disabled"))
        .filter_map(|item| {
            let Some(at) = field(item, "imageId").and_then(|id| deprecations.get(&id).copied()) else {
                return Some(item.to_owned());
            };
            let owned = field(item, "imageOwnerId").as_deref() == Some(caller);
            if at <= now && !owned && !include_deprecated {
                return None;
            }
            // moto has no deprecation: the time is the gateway's to add.
            Some(item.replacen(
                "</imageId>",
                &format!(
                    "</imageId><deprecationTime>{}</deprecationTime>",
                    crate::deprecation::shown(at)
                ),
                1,
            ))
        })
        .collect();
    format!(
        "{}<imagesSet>{kept}</imagesSet>{}",
        &xml[..start],
        &xml[end + "</imagesSet>".len()..]
    )
}

/// The caller's DescribeImages answer with `extra` images added (the caller's own answer may be
/// an InvalidAMIID error when only other accounts have them: then a fresh answer is made).
pub fn merged(own: Option<&str>, extra: &[String]) -> String {
    let items: String = extra.concat();
    match own.filter(|x| x.contains("<imagesSet")) {
        Some(xml) if xml.contains("<imagesSet/>") => xml.replace("<imagesSet/>", &format!("<imagesSet>{items}</imagesSet>")),
        Some(xml) => xml.replacen("</imagesSet>", &format!("{items}</imagesSet>"), 1),
        None => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>{}</requestId><imagesSet>{items}</imagesSet></DescribeImagesResponse>",
            uuid::Uuid::new_v4()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "<DescribeImagesResponse><requestId>r</requestId><imagesSet>\
        <item><imageId>ami-1</imageId><imageOwnerId>1</imageOwnerId><blockDeviceMapping><item><deviceName>/dev/xvda</deviceName></item></blockDeviceMapping><isPublic>false</isPublic></item>\
        <item><imageId>ami-2</imageId><imageOwnerId>2</imageOwnerId><isPublic>true</isPublic></item>\
        </imagesSet></DescribeImagesResponse>";

    #[test]
    fn items_are_whole_with_their_nested_items() {
        let items = image_items(ANSWER);
        assert_eq!(items.len(), 2);
        assert!(items[0].contains("/dev/xvda") && items[0].ends_with("</isPublic></item>"));
        assert_eq!(field(items[1], "imageId").as_deref(), Some("ami-2"));
        assert!(image_items("<x/>").is_empty());
    }

    #[test]
    fn merging_into_an_answer_an_empty_one_or_none() {
        let extra = vec!["<item><imageId>ami-9</imageId></item>".to_owned()];
        assert_eq!(image_items(&merged(Some(ANSWER), &extra)).len(), 3);
        let empty = "<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>";
        assert_eq!(image_items(&merged(Some(empty), &extra)).len(), 1);
        assert_eq!(image_items(&merged(None, &extra)).len(), 1);
    }

    #[test]
    fn the_owner_filter_applies_to_images_asked_for_by_id() {
        let form: BTreeMap<String, String> = [("Owner.1".to_owned(), "self".to_owned())].into();
        let kept = own_filtered(ANSWER, &form, "2");
        let items = image_items(&kept);
        assert_eq!(items.len(), 1);
        assert_eq!(field(items[0], "imageId").as_deref(), Some("ami-2"));
        assert!(kept.ends_with("</imagesSet></DescribeImagesResponse>"));
        assert_eq!(own_filtered(ANSWER, &BTreeMap::new(), "2"), ANSWER);
    }

    #[test]
    fn deprecation_times_are_shown_and_disabled_images_only_when_asked_for() {
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        let answer = ANSWER.replace(
            "<isPublic>true</isPublic>",
            "<isPublic>true</isPublic><imageState>disabled</imageState>",
        );
        let deprecations: HashMap<String, DateTime<Utc>> = [("ami-1".to_owned(), now)].into();
        let shown = as_ec2_shows(&answer, &BTreeMap::new(), "1", &deprecations, now);
        let items = image_items(&shown);
        assert_eq!(items.len(), 1, "the disabled image is left out by default: {shown}");
        assert_eq!(
            field(items[0], "deprecationTime").as_deref(),
            Some("2026-11-26T10:00:00.000Z")
        );
        assert!(items[0].contains("/dev/xvda"), "the rest of the image stays");
        let asked: BTreeMap<String, String> = [("IncludeDisabled".to_owned(), "true".to_owned())].into();
        let shown = as_ec2_shows(&answer, &asked, "1", &HashMap::new(), now);
        assert_eq!(image_items(&shown).len(), 2);
        assert_eq!(field(image_items(&shown)[0], "deprecationTime"), None);
        let empty = "<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>";
        assert_eq!(as_ec2_shows(empty, &asked, "1", &deprecations, now), empty);
    }

    #[test]
    fn another_accounts_deprecated_image_only_by_id_or_when_asked_for() {
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        let deprecated: HashMap<String, DateTime<Utc>> = [("ami-1".to_owned(), now)].into();
        let ids = |xml: &str| -> Vec<String> { image_items(xml).iter().filter_map(|i| field(i, "imageId")).collect() };
        let form = |k: &str, v: &str| -> BTreeMap<String, String> { [(k.to_owned(), v.to_owned())].into() };
        // ami-1 is account 1's: account 2 does not list it, its owner does.
        assert_eq!(
            ids(&as_ec2_shows(ANSWER, &BTreeMap::new(), "2", &deprecated, now)),
            ["ami-2"]
        );
        assert_eq!(
            ids(&as_ec2_shows(ANSWER, &BTreeMap::new(), "1", &deprecated, now)),
            ["ami-1", "ami-2"]
        );
        for asked in [form("IncludeDeprecated", "true"), form("ImageId.1", "ami-1")] {
            let shown = as_ec2_shows(ANSWER, &asked, "2", &deprecated, now);
            assert_eq!(ids(&shown), ["ami-1", "ami-2"], "{asked:?}");
            assert_eq!(
                field(image_items(&shown)[0], "deprecationTime").as_deref(),
                Some("2026-11-26T10:00:00.000Z")
            );
        }
        // Not yet deprecated: listed, with the time it will be.
        let before = now - chrono::TimeDelta::minutes(1);
        let shown = as_ec2_shows(ANSWER, &BTreeMap::new(), "2", &deprecated, before);
        assert_eq!(ids(&shown), ["ami-1", "ami-2"]);
    }

    #[test]
    fn self_is_the_caller() {
        let form: BTreeMap<String, String> = [
            ("Owner.1".to_owned(), "self".to_owned()),
            ("Owner.2".to_owned(), "3".to_owned()),
        ]
        .into();
        assert_eq!(owners(&form, "1"), ["1", "3"]);
    }
}
