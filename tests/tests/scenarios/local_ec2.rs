//! The local AWS's EC2 image lifecycle on the wire, with the real SDK client: deprecation (which
//! moto lacks and the gateway keeps) and disabling, as EC2 does them and DescribeImages shows
//! them. Per region and image, for the image's owner only, DeprecateAt rounded to the minute
//! and never in the past; another account's deprecated or disabled image left out of listings.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ec2::types::{Image, ImageState, LaunchPermission, LaunchPermissionModifications};
use gateway::world;
use gateway::LocalAws;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tests::local_aws;

/// An account the stack's account shares images with.
const CONSUMER: &str = "210987654321";
const OTHER_REGION: &str = "eu-west-1";
/// Well formed, and no image anywhere.
const UNKNOWN: &str = "ami-0123456789abcdef0";

async fn ours(aws: &LocalAws, region: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&aws.sdk_config(region).await)
}

async fn consumer(aws: &LocalAws) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&tests::account_sdk(aws, CONSUMER, &aws.region).await)
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A time as DescribeImages shows a deprecation: `2026-12-04T10:15:00.000Z`.
fn shown(secs: i64) -> String {
    let whole = DateTime::from_secs(secs).fmt(DateTimeFormat::DateTime).unwrap();
    whole.replace('Z', ".000Z")
}

async fn deprecate(ec2: &aws_sdk_ec2::Client, image: &str, at: DateTime) -> Result<(), (String, String)> {
    ec2.enable_image_deprecation()
        .image_id(image)
        .deprecate_at(at)
        .send()
        .await
        .map(drop)
        .map_err(|e| {
            (
                e.code().unwrap_or_default().to_owned(),
                e.message().unwrap_or_default().to_owned(),
            )
        })
}

/// The error code of a refused call (panics if it was not refused).
fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> String {
    r.expect_err("refused").code().unwrap_or_default().to_owned()
}

/// The images a DescribeImages request answers.
async fn described(req: aws_sdk_ec2::operation::describe_images::builders::DescribeImagesFluentBuilder) -> Vec<Image> {
    req.send().await.unwrap().images.unwrap_or_default()
}

fn find<'a>(images: &'a [Image], id: &str) -> Option<&'a Image> {
    images.iter().find(|i| i.image_id() == Some(id))
}

async fn share(ec2: &aws_sdk_ec2::Client, image: &str, account: &str) {
    ec2.modify_image_attribute()
        .image_id(image)
        .launch_permission(
            LaunchPermissionModifications::builder()
                .add(LaunchPermission::builder().user_id(account).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn deprecation_is_per_region_and_image_and_rounded_to_the_minute() {
    let aws = local_aws().await;
    let east = ours(&aws, &aws.region).await;
    let west = ours(&aws, OTHER_REGION).await;
    let ami = world::register_ami(&aws, "web-2026.12.1").await.unwrap();
    let copy = west
        .copy_image()
        .source_region(&aws.region)
        .source_image_id(&ami)
        .name("web-2026.12.1")
        .send()
        .await
        .unwrap()
        .image_id
        .unwrap();

    // An hour ahead, at 40 s past a minute: EC2 keeps the next minute.
    let minute = (now_secs() / 60 + 60) * 60;
    deprecate(&east, &ami, DateTime::from_secs(minute + 40)).await.unwrap();
    let by_id = described(east.describe_images().image_ids(&ami)).await;
    assert_eq!(by_id[0].deprecation_time(), Some(shown(minute + 60).as_str()));
    // At 29.9 s past it, the same minute (set again: the latest DeprecateAt holds).
    deprecate(&east, &ami, DateTime::from_millis((minute + 29) * 1000 + 900))
        .await
        .unwrap();
    let listed = described(east.describe_images().owners("self")).await;
    assert_eq!(
        find(&listed, &ami).and_then(|i| i.deprecation_time()),
        Some(shown(minute).as_str()),
        "the owner's listing shows it too"
    );

    // The copy in the other region is another image, not deprecated.
    let west_images = described(west.describe_images().owners("self").include_deprecated(true)).await;
    let copied = find(&west_images, &copy).expect("the copy is listed");
    assert_eq!(copied.deprecation_time(), None, "{copied:?}");
    // And the first region's id names no image there.
    let elsewhere = deprecate(&west, &ami, DateTime::from_secs(minute)).await.unwrap_err();
    assert_eq!(elsewhere.0, "InvalidAMIID.NotFound", "{elsewhere:?}");
    assert_eq!(elsewhere.1, format!("The image id '[{ami}]' does not exist"));
    deprecate(&west, &copy, DateTime::from_secs(minute + 120))
        .await
        .unwrap();
    let by_id = described(west.describe_images().image_ids(&copy)).await;
    assert_eq!(by_id[0].deprecation_time(), Some(shown(minute + 120).as_str()));
    let by_id = described(east.describe_images().image_ids(&ami)).await;
    assert_eq!(
        by_id[0].deprecation_time(),
        Some(shown(minute).as_str()),
        "each keeps its own"
    );

    // Cancelled: no deprecation time.
    east.disable_image_deprecation().image_id(&ami).send().await.unwrap();
    let by_id = described(east.describe_images().image_ids(&ami)).await;
    assert_eq!(by_id[0].deprecation_time(), None);
}

#[tokio::test]
async fn deprecate_at_is_required_and_never_in_the_past() {
    let aws = local_aws().await;
    let ec2 = ours(&aws, &aws.region).await;
    let ami = world::register_ami(&aws, "web-2026.12.1").await.unwrap();

    let past = deprecate(&ec2, &ami, DateTime::from_secs(now_secs() - 60))
        .await
        .unwrap_err();
    assert_eq!(past.0, "InvalidParameterValue", "{past:?}");
    let beyond = deprecate(&ec2, &ami, DateTime::from_secs(now_secs() + 11 * 366 * 86_400))
        .await
        .unwrap_err();
    assert_eq!(beyond.0, "InvalidParameterValue", "ten years at most: {beyond:?}");
    let missing = ec2.enable_image_deprecation().image_id(&ami).send().await;
    assert_eq!(code(missing), "MissingParameter");
    let by_id = described(ec2.describe_images().image_ids(&ami)).await;
    assert_eq!(by_id[0].deprecation_time(), None, "nothing refused was kept");
}

#[tokio::test]
async fn only_the_owner_deprecates_or_disables_an_image_and_unknown_ones_are_refused() {
    let aws = local_aws().await;
    let owner = ours(&aws, &aws.region).await;
    let them = consumer(&aws).await;
    let shared = world::register_ami(&aws, "web-shared").await.unwrap();
    let private = world::register_ami(&aws, "web-private").await.unwrap();
    share(&owner, &shared, CONSUMER).await;
    let soon = DateTime::from_secs(now_secs() + 3600);

    // Seen, not owned: an authorization failure for every owner-only call.
    let (code_, message) = deprecate(&them, &shared, soon).await.unwrap_err();
    assert_eq!(code_, "AuthFailure", "{message}");
    assert_eq!(message, format!("Not authorized for image:{shared}"));
    assert_eq!(
        code(them.disable_image_deprecation().image_id(&shared).send().await),
        "AuthFailure"
    );
    assert_eq!(code(them.disable_image().image_id(&shared).send().await), "AuthFailure");
    assert_eq!(code(them.enable_image().image_id(&shared).send().await), "AuthFailure");

    // Not seen (another account's private image, or none at all): not found.
    for image in [private.as_str(), UNKNOWN] {
        let (code_, message) = deprecate(&them, image, soon).await.unwrap_err();
        assert_eq!(code_, "InvalidAMIID.NotFound", "{image}: {message}");
        assert_eq!(message, format!("The image id '[{image}]' does not exist"));
        assert_eq!(
            code(them.disable_image_deprecation().image_id(image).send().await),
            "InvalidAMIID.NotFound"
        );
        assert_eq!(
            code(them.disable_image().image_id(image).send().await),
            "InvalidAMIID.NotFound"
        );
    }
    // Not an image id at all.
    for call in [
        deprecate(&owner, "ami-nothex", soon).await.map_err(|e| e.0),
        owner
            .disable_image()
            .image_id("ami-nothex")
            .send()
            .await
            .map(drop)
            .map_err(|e| e.code().unwrap_or_default().to_owned()),
    ] {
        assert_eq!(call.unwrap_err(), "InvalidAMIID.Malformed");
    }

    // Nothing of it happened to the owner's images.
    let images = described(owner.describe_images().owners("self")).await;
    for id in [&shared, &private] {
        let image = find(&images, id).unwrap();
        assert_eq!(image.deprecation_time(), None, "{image:?}");
        assert_eq!(image.state(), Some(&ImageState::Available));
    }
}

#[tokio::test]
async fn another_accounts_deprecated_image_is_listed_only_by_id_or_when_asked_for() {
    let aws = local_aws().await;
    let owner = ours(&aws, &aws.region).await;
    let them = consumer(&aws).await;
    let ami = world::register_ami(&aws, "soe-al2023-2026.11.1").await.unwrap();
    share(&owner, &ami, CONSUMER).await;
    // The next whole minute (DeprecateAt can't be in the past, so the test waits for it).
    let now = now_secs();
    let at = if 60 - now % 60 < 2 {
        (now / 60 + 2) * 60
    } else {
        (now / 60 + 1) * 60
    };
    deprecate(&owner, &ami, DateTime::from_secs(at)).await.unwrap();

    // Not deprecated yet: listed, with the time it will be.
    let listed = described(them.describe_images().executable_users("self")).await;
    let image = find(&listed, &ami).expect("listed before its deprecation time");
    assert_eq!(image.deprecation_time(), Some(shown(at).as_str()));

    let wait = at - now_secs() + 1;
    tokio::time::sleep(Duration::from_secs(wait.max(0) as u64)).await;

    let listed = described(them.describe_images().executable_users("self")).await;
    assert!(
        find(&listed, &ami).is_none(),
        "a user's listing leaves it out: {listed:?}"
    );
    let listed = described(them.describe_images().owners(&aws.account)).await;
    assert!(find(&listed, &ami).is_none(), "by owner too: {listed:?}");
    for (what, req) in [
        ("by id", them.describe_images().image_ids(&ami)),
        (
            "with IncludeDeprecated",
            them.describe_images().executable_users("self").include_deprecated(true),
        ),
        (
            "by id even with IncludeDeprecated=false",
            them.describe_images().image_ids(&ami).include_deprecated(false),
        ),
    ] {
        let images = described(req).await;
        let image = find(&images, &ami).unwrap_or_else(|| panic!("shown {what}: {images:?}"));
        assert_eq!(image.deprecation_time(), Some(shown(at).as_str()), "{what}");
    }
    // The owner sees all of its own, deprecated or not, whatever it asks.
    let own = described(owner.describe_images().owners("self").include_deprecated(false)).await;
    assert!(find(&own, &ami).is_some(), "{own:?}");
}

#[tokio::test]
async fn a_disabled_image_shows_its_state_only_when_asked_for_and_loses_its_launch_permissions() {
    let aws = local_aws().await;
    let owner = ours(&aws, &aws.region).await;
    let them = consumer(&aws).await;
    let ami = world::register_ami(&aws, "web-2026.12.1").await.unwrap();
    share(&owner, &ami, CONSUMER).await;

    owner.disable_image().image_id(&ami).send().await.unwrap();
    let listed = described(owner.describe_images().owners("self")).await;
    assert!(find(&listed, &ami).is_none(), "left out by default: {listed:?}");
    let asked = described(owner.describe_images().owners("self").include_disabled(true)).await;
    assert_eq!(find(&asked, &ami).and_then(|i| i.state()), Some(&ImageState::Disabled));
    let theirs = described(them.describe_images().executable_users("self").include_disabled(true)).await;
    assert!(find(&theirs, &ami).is_none(), "shared with no one: {theirs:?}");

    owner.enable_image().image_id(&ami).send().await.unwrap();
    let listed = described(owner.describe_images().owners("self")).await;
    assert_eq!(
        find(&listed, &ami).and_then(|i| i.state()),
        Some(&ImageState::Available)
    );
    // Re-enabled, it is not shared again by itself.
    let permissions = owner
        .describe_image_attribute()
        .image_id(&ami)
        .attribute(aws_sdk_ec2::types::ImageAttributeName::LaunchPermission)
        .send()
        .await
        .unwrap();
    assert!(permissions.launch_permissions().is_empty(), "{permissions:?}");
    let theirs = described(them.describe_images().executable_users("self")).await;
    assert!(find(&theirs, &ami).is_none(), "{theirs:?}");
}
