//! Arrow IPC helpers. A stream sends its schema once ([`encode_schema`]); each block body is
//! the IPC messages of one record batch and its dictionaries ([`encode_batch`]), decodable
//! on its own given the schema ([`BatchDecoder`]).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::{
    write_message, DictionaryTracker, IpcDataGenerator, IpcWriteOptions, StreamWriter,
};
use arrow_schema::{Schema, SchemaRef};

use crate::error::FormatError;

/// Encodes a schema as one IPC schema message.
pub fn encode_schema(schema: &Schema) -> Vec<u8> {
    let options = IpcWriteOptions::default();
    let mut tracker = DictionaryTracker::new(false);
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut tracker,
        &options,
    );
    let mut out = Vec::new();
    write_message(&mut out, encoded, &options).expect("writing to a Vec cannot fail");
    out
}

/// IPC end-of-stream marker: continuation token and a zero length.
const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// Decodes a schema encoded by [`encode_schema`].
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef, FormatError> {
    let more_than_schema = FormatError::IpcShape("schema payload holds more than a schema");
    let mut decoder = StreamDecoder::new();
    let mut buf = Buffer::from(bytes);
    if decoder.decode(&mut buf)?.is_some() {
        return Err(more_than_schema);
    }
    // The decoder completes a message only when it sees bytes after it (arrow-ipc 60):
    // the end-of-stream marker lets it finish the schema.
    let mut eos = Buffer::from(&END_OF_STREAM[..]);
    if decoder.decode(&mut eos)?.is_some() || !eos.is_empty() {
        return Err(more_than_schema);
    }
    decoder
        .schema()
        .ok_or(FormatError::IpcShape("schema payload is incomplete"))
}

/// Encodes one record batch (and the dictionaries it uses) as IPC messages, appended to
/// `out`. The schema is not included.
///
/// The messages are written straight into `out`: arrow's stream writer copies each
/// column buffer once, where encoding to `EncodedData` first grew a body buffer of its
/// own per batch (fresh memory, faulted in and zeroed) and then copied it again.
pub fn encode_batch(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), FormatError> {
    // A fresh writer per batch makes every body self-contained: its dictionary tracker
    // sends every dictionary the batch uses. The schema message it writes first is
    // dropped.
    let sink = AppendAfterSchema {
        out,
        schema_done: false,
    };
    let mut writer =
        StreamWriter::try_new_with_options(sink, &batch.schema(), IpcWriteOptions::default())?;
    writer.get_mut().schema_done = true;
    writer.write(batch)?;
    // Not finished: the end-of-stream marker is not part of a body.
    Ok(())
}

/// Appends to a buffer what a stream writer writes after its schema message.
struct AppendAfterSchema<'a> {
    out: &'a mut Vec<u8>,
    schema_done: bool,
}

impl std::io::Write for AppendAfterSchema<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.schema_done {
            self.out.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes batch bodies of one stream against its schema.
#[derive(Debug, Clone)]
pub struct BatchDecoder {
    schema: SchemaRef,
    schema_message: Buffer,
}

impl BatchDecoder {
    /// Builds a decoder from the stream's encoded schema message.
    pub fn new(schema_message: &[u8]) -> Result<Self, FormatError> {
        let schema = decode_schema(schema_message)?;
        Ok(Self {
            schema,
            schema_message: Buffer::from(schema_message),
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes one body: exactly one record batch (after its dictionaries), nothing else.
    /// Arrow validates the decoded arrays, so malformed input gives an error, not a panic.
    pub fn decode(&self, body: Buffer) -> Result<RecordBatch, FormatError> {
        crate::ipc_check::check_messages(&body)?;
        // Defence in depth: arrow-ipc has panicked on malformed input before; a panic
        // here must become an error, not take down a server thread or a reducer.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.decode_checked(body)))
            .unwrap_or(Err(FormatError::IpcShape(
                "malformed batch (decoder panicked)",
            )))
    }

    fn decode_checked(&self, body: Buffer) -> Result<RecordBatch, FormatError> {
        // A fresh decoder per body: a malformed body cannot leave state behind.
        let mut decoder = StreamDecoder::new();
        let mut schema = self.schema_message.clone();
        decoder.decode(&mut schema)?;
        let mut body = body;
        let mut batch = decoder.decode(&mut body)?;
        if batch.is_none() && body.is_empty() {
            // arrow-ipc completes a message only when it sees bytes after it: a batch
            // whose body is empty (no rows, as pyarrow writes them) needs the
            // end-of-stream marker to finish.
            batch = decoder.decode(&mut Buffer::from(&END_OF_STREAM[..]))?;
        }
        let batch = batch.ok_or(FormatError::IpcShape("body holds no complete record batch"))?;
        if !body.is_empty() {
            return Err(FormatError::IpcShape(
                "trailing bytes after the record batch",
            ));
        }
        if batch.schema() != self.schema && !same_fields(&batch.schema(), &self.schema) {
            return Err(FormatError::IpcShape(
                "batch does not match the stream schema",
            ));
        }
        Ok(batch)
    }
}

fn same_fields(a: &Arc<Schema>, b: &Arc<Schema>) -> bool {
    a.fields() == b.fields()
}
