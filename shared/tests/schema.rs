//! Tables made from `template.yaml` in DynamoDB Local are what the template says.

use aws_sdk_dynamodb::types::{ProjectionType, StreamViewType, TimeToLiveStatus};
use session_store::schema::TableSpec;
use session_testkit as testkit;

#[tokio::test]
async fn the_local_sessions_table_is_the_one_the_template_defines() {
    let spec = TableSpec::sessions().unwrap();
    let (client, _) = testkit::client();
    let name = testkit::fresh_sessions_table(&client).await;
    let table = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();

    assert_eq!(table.key_schema(), spec.key_schema.as_slice());
    let mut attributes = table.attribute_definitions().to_vec();
    let mut expected = spec.attributes.clone();
    attributes.sort_by(|a, b| a.attribute_name().cmp(b.attribute_name()));
    expected.sort_by(|a, b| a.attribute_name().cmp(b.attribute_name()));
    assert_eq!(attributes, expected);

    let indexes = table.global_secondary_indexes();
    assert_eq!(indexes.len(), spec.indexes.len());
    for want in &spec.indexes {
        let have = indexes
            .iter()
            .find(|i| i.index_name() == Some(want.index_name()))
            .unwrap();
        assert_eq!(have.key_schema(), want.key_schema());
        assert_eq!(
            have.projection().and_then(|p| p.projection_type()),
            Some(&ProjectionType::KeysOnly)
        );
    }
    let stream = table.stream_specification().unwrap();
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type(), Some(&StreamViewType::OldImage));

    let ttl = client.describe_time_to_live().table_name(&name).send().await.unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), spec.ttl_attribute.as_deref());
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}
