//! A minimal internal producer: builds an Arrow batch and puts it to inflow over
//! Arrow Flight `DoPut` on the edge's port. Copy it as a starting point.
//!
//! ```sh
//! cargo run --example producer -- http://127.0.0.1:8086 "$(cat data/admin-token)" mydb cpu
//! ```
//!
//! Columns: dictionary or string columns are tags, the `time` timestamp is time,
//! everything else a field (or say so with field metadata `inflow.column`).
//! One `PutResult` comes back per batch, once the batch is durable.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampNanosecondArray};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::TryStreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, token, database, table] = args.as_slice() else {
        eprintln!("usage: producer URL TOKEN DATABASE TABLE");
        std::process::exit(2);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as i64;
    let batch = RecordBatch::try_from_iter([
        (
            "host",
            Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
        ),
        (
            "usage",
            Arc::new(Float64Array::from(vec![0.25, 0.5, 0.75])) as ArrayRef,
        ),
        (
            "time",
            Arc::new(TimestampNanosecondArray::from(vec![now, now, now])) as ArrayRef,
        ),
    ])?;

    let channel = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect()
        .await?;
    let mut client = FlightServiceClient::new(channel);
    let descriptor = FlightDescriptor::new_path(vec![database.clone(), table.clone()]);
    let messages: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(futures::stream::iter([Ok(batch)]))
        .try_collect()
        .await?;
    let mut request = tonic::Request::new(futures::stream::iter(messages));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut acks = client.do_put(request).await?.into_inner();
    let mut n = 0;
    while acks.message().await?.is_some() {
        n += 1;
    }
    println!("{n} batch(es) durable in {database}.{table}");
    Ok(())
}
