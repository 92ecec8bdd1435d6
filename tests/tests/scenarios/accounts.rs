//! Accounts apart, as AWS keeps them: what one account shares with another (an AMI's launch
//! permission) is what the other can see and launch, and nothing more.

use aws_sdk_ec2::types::{InstanceType, LaunchPermission, LaunchPermissionModifications};
use gateway::world;
use gateway::LocalAws;
use tests::local_aws;

/// EC2 clients acting for `account` (STS AssumeRole gives a real second account).
async fn ec2_of(aws: &LocalAws, account: &str) -> aws_sdk_ec2::Client {
    let sdk = aws.sdk_config(&aws.region).await;
    let creds = aws_sdk_sts::Client::new(&sdk)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/operator"))
        .role_session_name("operator")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let provider = aws_sdk_sts::config::Credentials::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        Some(creds.session_token().to_owned()),
        None,
        "assumed",
    );
    let sdk = sdk
        .to_builder()
        .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(provider))
        .build();
    aws_sdk_ec2::Client::new(&sdk)
}

async fn launch(ec2: &aws_sdk_ec2::Client, image: &str) -> Result<String, String> {
    ec2.run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .map(|o| o.instances()[0].instance_id().unwrap_or_default().to_owned())
        .map_err(|e| e.into_service_error().to_string())
}

#[tokio::test]
async fn a_consumer_sees_and_launches_a_shared_ami_and_nothing_else() {
    let aws = local_aws().await;
    let consumer = "210987654321";
    let consumer_ec2 = ec2_of(&aws, consumer).await;
    let ours = aws_sdk_ec2::Client::new(&aws.sdk_config(&aws.region).await);
    let shared = world::register_ami(&aws, "web-2026.12.1").await.unwrap();
    let private = world::register_ami(&aws, "web-private").await.unwrap();
    ours.modify_image_attribute()
        .image_id(&shared)
        .launch_permission(
            LaunchPermissionModifications::builder()
                .add(LaunchPermission::builder().user_id(consumer).build())
                .build(),
        )
        .send()
        .await
        .unwrap();

    let seen = consumer_ec2
        .describe_images()
        .executable_users("self")
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = seen.images().iter().filter_map(|i| i.image_id()).collect();
    assert!(ids.contains(&shared.as_str()), "{ids:?}");
    assert!(!ids.contains(&private.as_str()), "{ids:?}");
    let owner = seen
        .images()
        .iter()
        .find(|i| i.image_id() == Some(shared.as_str()))
        .unwrap();
    assert_eq!(owner.owner_id(), Some(aws.account.as_str()));

    assert!(launch(&consumer_ec2, &shared).await.is_ok());
    let refused = launch(&consumer_ec2, &private).await.unwrap_err();
    assert!(refused.contains("InvalidAMIID.NotFound"), "{refused}");
    let nothing = launch(&consumer_ec2, "ami-0123456789abcdef0").await.unwrap_err();
    assert!(nothing.contains("InvalidAMIID.NotFound"), "{nothing}");
}
