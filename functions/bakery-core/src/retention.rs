//! Retention: which of a pipeline's published AMIs in a region go after a publication. The
//! newest `keep` stay; an older one stays too if an SSM parameter points at it, if a live image
//! was built on it (its bake is the source or in the parent chain of one), or if it is younger
//! than `minAgeDays`. Everything else is deregistered with its snapshots.

use crate::policy::Retention;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One of the pipeline's AMIs in a region, as DescribeImages and its tags tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub image_id: String,
    /// `bakery:bake-id`: the AMIs of one bake in every region share it.
    pub bake_id: String,
    pub created: DateTime<Utc>,
    pub snapshot_ids: Vec<String>,
}

/// Why an AMI stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kept {
    /// Among the newest `keep`.
    Newest,
    /// An SSM parameter points at it.
    Parameter,
    /// A live image was built on its bake.
    Descendant,
    /// Younger than `minAgeDays`.
    Young,
}

/// What happens to one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub candidate: Candidate,
    /// `None`: deregister it and delete its snapshots.
    pub kept: Option<Kept>,
}

/// The decisions for one region's candidates, newest first. The AMIs of `current` (the bake
/// just published) count first among the newest and always stay. `pointed` holds the AMI IDs
/// SSM parameters point at; `parent_bakes` the bakes a live image was built on.
pub fn plan(
    retention: &Retention,
    current: &str,
    mut candidates: Vec<Candidate>,
    pointed: &BTreeSet<String>,
    parent_bakes: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    // The current bake, then newest first; the image ID breaks a tie of creation times.
    candidates.sort_by(|a, b| {
        (b.bake_id == current)
            .cmp(&(a.bake_id == current))
            .then_with(|| b.created.cmp(&a.created))
            .then_with(|| b.image_id.cmp(&a.image_id))
    });
    let young_after = now - Duration::days(i64::from(retention.min_age_days));
    candidates
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let kept = if i < retention.keep as usize || c.bake_id == current {
                Some(Kept::Newest)
            } else if pointed.contains(&c.image_id) {
                Some(Kept::Parameter)
            } else if parent_bakes.contains(&c.bake_id) {
                Some(Kept::Descendant)
            } else if c.created > young_after {
                Some(Kept::Young)
            } else {
                None
            };
            Decision { candidate: c, kept }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap() + Duration::days(day)
    }

    fn candidate(n: u32, day: i64) -> Candidate {
        Candidate {
            image_id: format!("ami-{n:017x}"),
            bake_id: format!("web-{n}"),
            created: at(day),
            snapshot_ids: vec![format!("snap-{n:017x}")],
        }
    }

    fn kept(decisions: &[Decision]) -> Vec<(u32, Option<Kept>)> {
        decisions
            .iter()
            .map(|d| (u32::from_str_radix(&d.candidate.image_id[4..], 16).unwrap(), d.kept))
            .collect()
    }

    #[test]
    fn the_newest_stay_and_the_rest_go_unless_something_holds_them() {
        let retention = Retention {
            keep: 2,
            min_age_days: 25,
        };
        // Built on days 0, 10, 20, 30, 40, 50; today is day 52: only day 30 is within 25 days.
        let candidates: Vec<Candidate> = (1..=6).map(|n| candidate(n, i64::from(n - 1) * 10)).collect();
        let pointed = BTreeSet::from([candidate(2, 0).image_id]);
        let parents = BTreeSet::from(["web-3".to_owned()]);
        let got = kept(&plan(&retention, "web-6", candidates, &pointed, &parents, at(52)));
        assert_eq!(
            got,
            [
                (6, Some(Kept::Newest)),
                (5, Some(Kept::Newest)),
                (4, Some(Kept::Young)),
                (3, Some(Kept::Descendant)),
                (2, Some(Kept::Parameter)),
                (1, None),
            ]
        );
    }

    #[test]
    fn nothing_goes_while_there_are_no_more_than_keep() {
        let retention = Retention {
            keep: 3,
            min_age_days: 0,
        };
        let got = plan(
            &retention,
            "web-2",
            vec![candidate(1, 0), candidate(2, 1)],
            &BTreeSet::new(),
            &BTreeSet::new(),
            at(400),
        );
        assert!(got.iter().all(|d| d.kept == Some(Kept::Newest)), "{got:?}");
    }

    #[test]
    fn with_no_minimum_age_everything_beyond_keep_goes() {
        let retention = Retention {
            keep: 1,
            min_age_days: 0,
        };
        let got = kept(&plan(
            &retention,
            "web-3",
            vec![candidate(1, 0), candidate(3, 2), candidate(2, 1)],
            &BTreeSet::new(),
            &BTreeSet::new(),
            at(2),
        ));
        assert_eq!(got, [(3, Some(Kept::Newest)), (2, None), (1, None)]);
    }

    #[test]
    fn the_bake_just_published_counts_first_and_always_stays() {
        let retention = Retention {
            keep: 1,
            min_age_days: 0,
        };
        // Its clock says it is older than another bake: it stays, and that one goes.
        let got = kept(&plan(
            &retention,
            "web-1",
            vec![candidate(1, 0), candidate(2, 5)],
            &BTreeSet::new(),
            &BTreeSet::new(),
            at(9),
        ));
        assert_eq!(got, [(1, Some(Kept::Newest)), (2, None)]);
    }
}
