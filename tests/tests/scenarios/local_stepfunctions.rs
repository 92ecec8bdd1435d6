//! The local AWS's Step Functions where moto falls short, with the real SDK client:
//! GetExecutionHistory pages, reverses and leaves out the data as asked (moto returns every
//! event, oldest first, whatever is asked), and RedriveExecution refuses what AWS refuses.
//! Redrive resuming a failed bake is in `faults.rs`.

use gateway::world;
use std::time::Duration;
use tests::local_aws_with;

#[tokio::test]
async fn execution_history_pages_reverses_and_leaves_out_data_and_a_succeeded_execution_is_not_redriven() {
    let aws = local_aws_with(&[("BuildWaitSeconds", "30"), ("CopyPollSeconds", "1")]).await;
    let world = world::seed(&aws, "web").await.unwrap();
    let release = world::register_ami(&aws, "soe-al2023-2026.11.2-web").await.unwrap();
    let report = world::bake(&aws, &world, &release, "web-history", Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(report.status, "SUCCEEDED", "{report:#?}");
    let arn = &report.execution_arn;
    let sfn = aws_sdk_sfn::Client::new(&aws.sdk_config(&aws.region).await);
    let history = |max: i32| sfn.get_execution_history().execution_arn(arn).max_results(max);

    let full = history(1000).send().await.unwrap();
    assert_eq!(full.next_token(), None);
    let ids: Vec<i64> = full.events().iter().map(|e| e.id()).collect();
    assert!(ids.len() > 10, "{ids:?}");

    let mut paged = Vec::new();
    let mut token = None;
    loop {
        let page = history(4).set_next_token(token).send().await.unwrap();
        assert!(page.events().len() <= 4, "{page:?}");
        paged.extend(page.events().iter().map(|e| e.id()));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(paged, ids, "the pages are the history, in order");

    let newest = history(1).reverse_order(true).send().await.unwrap();
    let last = newest.events().first().expect("one event");
    assert_eq!(last.r#type(), &aws_sdk_sfn::types::HistoryEventType::ExecutionSucceeded);
    assert_eq!(Some(last.id()), ids.last().copied());
    assert!(newest.next_token().is_some(), "more behind it");

    let entered_inputs = |h: &aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput| {
        h.events()
            .iter()
            .filter_map(|e| e.state_entered_event_details())
            .filter(|d| d.input().is_some())
            .count()
    };
    assert!(entered_inputs(&full) > 0, "the data is there by default");
    let lean = history(1000).include_execution_data(false).send().await.unwrap();
    assert_eq!(lean.events().len(), ids.len());
    assert_eq!(entered_inputs(&lean), 0, "includeExecutionData false leaves it out");

    let bad = sfn
        .get_execution_history()
        .execution_arn(arn)
        .next_token("not-a-token")
        .send()
        .await;
    let bad = bad.map_err(|e| e.into_service_error()).unwrap_err();
    assert!(bad.is_invalid_token(), "{bad:?}");

    let refused = sfn.redrive_execution().execution_arn(arn).send().await;
    let refused = refused.map_err(|e| e.into_service_error()).unwrap_err();
    assert!(refused.is_execution_not_redrivable(), "{refused:?}");
    let d = sfn.describe_execution().execution_arn(arn).send().await.unwrap();
    assert_eq!(
        d.redrive_status(),
        Some(&aws_sdk_sfn::types::ExecutionRedriveStatus::NotRedrivable)
    );
    assert_eq!(
        d.redrive_status_reason(),
        Some("Execution is SUCCEEDED and cannot be redriven.")
    );
    assert_eq!(d.redrive_count(), Some(0));
}
