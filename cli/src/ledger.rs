//! The ledger (stack output LedgerTableName) as the operator commands read and write it: an
//! AMI's lineage row (`ami#<id>`, `lineage`), its revocation (`ami#<id>`, `revoked`), a bake's
//! AMIs (`bake#<id>`, `published`), and the `byParent` index for what was built on an AMI.

use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

pub(crate) type Row = HashMap<String, AttributeValue>;

/// A string attribute of a row, or "".
pub(crate) fn s<'r>(row: &'r Row, key: &str) -> &'r str {
    row.get(key).and_then(|v| v.as_s().ok()).map_or("", String::as_str)
}

pub(crate) struct Ledger {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
}

impl Ledger {
    pub(crate) fn new(sdk: &aws_config::SdkConfig, table: &str) -> Ledger {
        Ledger {
            ddb: aws_sdk_dynamodb::Client::new(sdk),
            table: table.to_owned(),
        }
    }

    pub(crate) async fn row(&self, pk: &str, sk: &str) -> Result<Option<Row>, String> {
        let key = |v: &str| AttributeValue::S(v.to_owned());
        bakery_aws::send("GetItem", || {
            self.ddb
                .get_item()
                .table_name(&self.table)
                .key("pk", key(pk))
                .key("sk", key(sk))
                .consistent_read(true)
                .send()
        })
        .await
        .map(|o| o.item)
        .map_err(|e| e.to_string())
    }

    pub(crate) async fn put(&self, row: Row) -> Result<(), String> {
        bakery_aws::send("PutItem", || {
            self.ddb
                .put_item()
                .table_name(&self.table)
                .set_item(Some(row.clone()))
                .send()
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    }

    pub(crate) async fn lineage(&self, image_id: &str) -> Result<Option<Row>, String> {
        self.row(&format!("ami#{image_id}"), "lineage").await
    }

    /// The AMI's revocation, if it was revoked.
    pub(crate) async fn revoked(&self, image_id: &str) -> Result<Option<Row>, String> {
        self.row(&format!("ami#{image_id}"), "revoked").await
    }

    /// The bake's AMI in every region (`region:ami` in its `bake#<id>` row).
    pub(crate) async fn bake_amis(&self, bake_id: &str) -> Result<Vec<(String, String)>, String> {
        let row = self.row(&format!("bake#{bake_id}"), "published").await?;
        let list = row
            .as_ref()
            .and_then(|r| r.get("amis"))
            .and_then(|v| v.as_l().ok())
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|v| v.as_s().ok())
            .filter_map(|v| v.split_once(':'))
            .map(|(r, a)| (r.to_owned(), a.to_owned()))
            .collect())
    }

    /// The lineage rows of the AMIs built on `image_id`.
    pub(crate) async fn children(&self, image_id: &str) -> Result<Vec<Row>, String> {
        let mut out = Vec::new();
        let mut start: Option<Row> = None;
        loop {
            let page = bakery_aws::send("Query", || {
                self.ddb
                    .query()
                    .table_name(&self.table)
                    .index_name("byParent")
                    .key_condition_expression("parent = :p")
                    .expression_attribute_values(":p", AttributeValue::S(image_id.to_owned()))
                    .set_exclusive_start_key(start.clone())
                    .send()
            })
            .await
            .map_err(|e| e.to_string())?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}
