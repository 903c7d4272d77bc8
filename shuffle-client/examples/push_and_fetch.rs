//! A native engine's view of Sluice: push the Arrow output of two map tasks, then read
//! each reduce partition back. Starts an embedded server on loopback so it runs alone:
//!
//!     cargo run -p sluice-client --example push_and_fetch

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use sluice_client::{
    AppCredentials, Client, ClientConfig, FetchRequest, MapAttempt, MapFilter, Partitioning,
    PushRequest, Trust,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In production the server is a sidecar; its data dir holds the token and certificate.
    let dir = tempfile::tempdir()?;
    let config = sluice_server::ServerConfig::embedded(dir.path().to_path_buf());
    let server = sluice_server::Server::start(config).await?;

    let config = ClientConfig::new(
        Trust::PinnedPem(server.certificate_pem().to_string()),
        server.token().to_vec(),
    );
    let client = Client::connect(server.local_addr(), &config).await?;
    let app = AppCredentials::new("example-app", b"an-example-app-secret".to_vec())?;
    client.register_app(&app).await?;

    let schema = Arc::new(Schema::new(vec![
        Field::new("customer", DataType::Int64, false),
        Field::new("item", DataType::Utf8, true),
    ]));
    let partitions = 4;
    for map_index in 0..2u32 {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    (0..10).map(|i| i + 10 * map_index as i64),
                )),
                Arc::new(StringArray::from_iter(
                    (0..10).map(|i| (i % 3 != 0).then(|| format!("item-{i}"))),
                )),
            ],
        )?;
        let mut push = client
            .push(PushRequest {
                app: app.clone(),
                shuffle_id: 0,
                map: MapAttempt {
                    map_id: 100 + map_index as u64,
                    map_index,
                    attempt: 0,
                },
                num_partitions: partitions,
                // Spark-compatible: the same partition Spark would pick for `customer`.
                partitioning: Partitioning::Hash { columns: vec![0] },
                schema: schema.clone(),
                replicas: Vec::new(),
            })
            .await?;
        push.send(&batch).await?;
        let ack = push.commit().await?;
        println!(
            "map {map_index} committed: rows per partition {:?}",
            ack.partition_rows
        );
    }

    for partition in 0..partitions {
        let request = FetchRequest::partitions(app.clone(), 0, partition..partition + 1)
            .with_maps(MapFilter::MapIds(vec![100, 101]));
        let mut fetch = client.fetch(request).await?;
        let mut customers = Vec::new();
        while let Some((_, batch)) = fetch.next_batch().await? {
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64");
            customers.extend(column.values().iter().copied());
        }
        println!("partition {partition}: customers {customers:?}");
    }

    client.delete_app(&app).await?;
    client.close().await;
    server.shutdown().await;
    Ok(())
}
