//! Parquet of FOCUS's types from COPY's text output: decimals exact as DECIMAL(38, s), s the
//! file's largest scale of that column (a value that needs more digits is refused, never
//! rounded); timestamps in microseconds, UTC; IDs and every other text as UTF-8 strings.
//! Rows are gathered column by column into row groups of bounded size, written as each fills.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::data_type::FixedLenByteArrayType;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, FixedLenByteArray, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use super::{Column, Encoder, ExportError, Hashed, Kind, Written};

/// Parquet's DECIMAL of 16 bytes holds 38 digits, and so does every reader's (Arrow's
/// decimal128, DuckDB's, Spark's).
const PRECISION: u32 = 38;
/// A row group is written once it holds this many rows or bytes: memory stays bounded,
/// whatever the month's size, and readers still get long runs of a column.
const ROW_GROUP_ROWS: usize = 64 * 1024;
const ROW_GROUP_BYTES: usize = 16 << 20;

/// `columns` for `COPY … TO STDOUT` (text), each read as [`ParquetFile`] parses it.
pub(super) fn select_list(columns: &[Column]) -> String {
    super::select_list(columns, |kind| match kind {
        Kind::Timestamp => "(extract(epoch FROM {name}) * 1000000)::int8 AS {name}",
        _ => "{name}",
    })
}

/// The largest scale of each decimal column among the file's rows (`rows`: its FROM and WHERE
/// clauses), 0 for the other columns: the scale of the column's DECIMAL, which holds each of
/// its values exactly. One pass over the rows ahead of the file's, in the same snapshot, read
/// through COPY as the rows are (a month's pass takes seconds, which is no slow query here).
pub(super) async fn scales(
    tx: &mut sqlx::PgConnection,
    columns: &[Column],
    rows: &str,
    path: &Path,
) -> Result<Vec<u32>, ExportError> {
    let select = super::select_list(columns, |kind| match kind {
        Kind::Decimal => "coalesce(max(scale({name})), 0)",
        _ => "0",
    });
    let mut stream = tx
        .copy_out_raw(&format!("COPY (SELECT {select} {rows}) TO STDOUT"))
        .await?;
    let mut line = Vec::new();
    while let Some(chunk) = stream.next().await {
        line.extend_from_slice(&chunk?);
    }
    let scales: Vec<u32> = std::str::from_utf8(&line)
        .unwrap_or_default()
        .trim_end()
        .split('\t')
        // A larger scale is refused value by value, naming the row.
        .filter_map(|scale| scale.parse::<u32>().ok().map(|s| s.min(PRECISION)))
        .collect();
    if scales.len() != columns.len() {
        let line = String::from_utf8_lossy(&line);
        return Err(copy_error(path, 1, &format!("the scales read {line:?}")));
    }
    Ok(scales)
}

/// One Parquet file being written from COPY's text output.
pub(super) struct ParquetFile {
    writer: SerializedFileWriter<Hashed>,
    columns: Vec<Buffer>,
    /// The start of a row that the last chunk cut.
    pending: Vec<u8>,
    /// Rows parsed so far (the last one's number, in errors).
    rows: u64,
    buffered_rows: usize,
    buffered_bytes: usize,
    path: PathBuf,
}

/// A row group's values of one column.
struct Buffer {
    name: String,
    /// Parquet's definition level of each row: 1 for a value, 0 for NULL.
    defined: Vec<i16>,
    values: Values,
}

enum Values {
    /// The values' bytes end to end, and where each ends (a row group holds less than 4 GB).
    Text {
        data: Vec<u8>,
        ends: Vec<u32>,
    },
    /// Each value as 16 bytes, big-endian two's complement, at `scale` decimal places.
    Decimal {
        data: Vec<u8>,
        scale: u32,
    },
    Timestamp(Vec<i64>),
    Boolean(Vec<bool>),
}

impl Buffer {
    /// Empties the buffer once its row group is written.
    fn clear(&mut self) {
        self.defined.clear();
        match &mut self.values {
            Values::Text { data, ends } => {
                data.clear();
                ends.clear();
            }
            Values::Decimal { data, .. } => data.clear(),
            Values::Timestamp(values) => values.clear(),
            Values::Boolean(values) => values.clear(),
        }
    }
}

impl ParquetFile {
    pub(super) fn new(
        out: Hashed,
        columns: &[Column],
        scales: &[u32],
        path: &Path,
    ) -> Result<Self, ExportError> {
        let failed = |error: ParquetError| parquet_error(path, error);
        let fields = columns
            .iter()
            .zip(scales)
            .map(|(column, &scale)| field(column, scale).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let schema = Type::group_type_builder("schema")
            .with_fields(fields)
            .build()
            .map_err(failed)?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("dbr-ingest {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(properties))
            .map_err(failed)?;
        let columns = columns
            .iter()
            .zip(scales)
            .map(|(column, &scale)| Buffer {
                name: column.name.clone(),
                defined: Vec::new(),
                values: match column.kind {
                    Kind::Text => Values::Text {
                        data: Vec::new(),
                        ends: Vec::new(),
                    },
                    Kind::Decimal => Values::Decimal {
                        data: Vec::new(),
                        scale,
                    },
                    Kind::Timestamp => Values::Timestamp(Vec::new()),
                    Kind::Boolean => Values::Boolean(Vec::new()),
                },
            })
            .collect();
        Ok(ParquetFile {
            writer,
            columns,
            pending: Vec::new(),
            rows: 0,
            buffered_rows: 0,
            buffered_bytes: 0,
            path: path.to_owned(),
        })
    }

    /// Parses one row (its line without the line end) into the buffers.
    fn row(&mut self, line: &[u8]) -> Result<(), ExportError> {
        self.rows += 1;
        let mut fields = line.split(|&b| b == b'\t');
        for buffer in &mut self.columns {
            let Some(field) = fields.next() else {
                return Err(copy_error(
                    &self.path,
                    self.rows,
                    "fewer fields than columns",
                ));
            };
            if field == b"\\N" {
                buffer.defined.push(0);
                continue;
            }
            buffer.defined.push(1);
            let refused = |reason: &str| ExportError::Unrepresentable {
                path: self.path.clone(),
                row: self.rows,
                column: buffer.name.clone(),
                value: String::from_utf8_lossy(field).into_owned(),
                reason: reason.to_owned(),
            };
            match &mut buffer.values {
                Values::Text { data, ends } => {
                    unescape(field, data);
                    ends.push(data.len() as u32);
                }
                Values::Decimal { data, scale } => {
                    let value = unscaled(field, *scale).map_err(refused)?;
                    data.extend_from_slice(&value.to_be_bytes());
                }
                Values::Timestamp(values) => values.push(
                    std::str::from_utf8(field)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .ok_or_else(|| refused("is not a timestamp in microseconds"))?,
                ),
                Values::Boolean(values) => values.push(match field {
                    b"t" => true,
                    b"f" => false,
                    _ => return Err(refused("is not a boolean")),
                }),
            }
        }
        if fields.next().is_some() {
            return Err(copy_error(
                &self.path,
                self.rows,
                "more fields than columns",
            ));
        }
        self.buffered_rows += 1;
        self.buffered_bytes += line.len();
        if self.buffered_rows >= ROW_GROUP_ROWS || self.buffered_bytes >= ROW_GROUP_BYTES {
            self.write_row_group()?;
        }
        Ok(())
    }

    fn write_row_group(&mut self) -> Result<(), ExportError> {
        let path = self.path.clone();
        let failed = |error: ParquetError| parquet_error(&path, error);
        let mut group = self.writer.next_row_group().map_err(failed)?;
        for buffer in &mut self.columns {
            let mut column = group
                .next_column()
                .map_err(failed)?
                .expect("the schema has a column per buffer");
            let defined = Some(buffer.defined.as_slice());
            match &mut buffer.values {
                Values::Text { data, ends } => {
                    let data = Bytes::from(std::mem::take(data));
                    let mut start = 0;
                    let values: Vec<ByteArray> = ends
                        .iter()
                        .map(|&end| {
                            let value = ByteArray::from(data.slice(start..end as usize));
                            start = end as usize;
                            value
                        })
                        .collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, defined, None)
                }
                Values::Decimal { data, .. } => {
                    let data = Bytes::from(std::mem::take(data));
                    let values: Vec<FixedLenByteArray> = (0..data.len() / 16)
                        .map(|i| ByteArray::from(data.slice(i * 16..i * 16 + 16)).into())
                        .collect();
                    column
                        .typed::<FixedLenByteArrayType>()
                        .write_batch(&values, defined, None)
                }
                Values::Timestamp(values) => column
                    .typed::<Int64Type>()
                    .write_batch(values, defined, None),
                Values::Boolean(values) => column
                    .typed::<BoolType>()
                    .write_batch(values, defined, None),
            }
            .map_err(failed)?;
            column.close().map_err(failed)?;
            buffer.clear();
        }
        group.close().map_err(failed)?;
        self.buffered_rows = 0;
        self.buffered_bytes = 0;
        Ok(())
    }
}

impl Encoder for ParquetFile {
    fn chunk(&mut self, mut bytes: &[u8]) -> Result<(), ExportError> {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            if self.pending.is_empty() {
                self.row(&bytes[..end])?;
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(&bytes[..end]);
                self.row(&line)?;
                line.clear();
                self.pending = line;
            }
            bytes = &bytes[end + 1..];
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(mut self) -> Result<Written, ExportError> {
        if !self.pending.is_empty() {
            return Err(copy_error(
                &self.path,
                self.rows + 1,
                "the last row has no line end",
            ));
        }
        if self.buffered_rows > 0 {
            self.write_row_group()?;
        }
        let out = self
            .writer
            .into_inner()
            .map_err(|error| parquet_error(&self.path, error))?;
        out.into_written(self.rows)
            .map_err(|source| super::write_error(&self.path, source))
    }
}

/// The Parquet field of `column`, every one nullable.
fn field(column: &Column, scale: u32) -> Result<Type, ParquetError> {
    let name = column.name.as_str();
    match column.kind {
        Kind::Decimal => Type::primitive_type_builder(name, PhysicalType::FIXED_LEN_BYTE_ARRAY)
            .with_length(16)
            .with_logical_type(Some(LogicalType::decimal(scale as i32, PRECISION as i32)))
            .with_precision(PRECISION as i32)
            .with_scale(scale as i32),
        Kind::Timestamp => Type::primitive_type_builder(name, PhysicalType::INT64)
            .with_logical_type(Some(LogicalType::timestamp(true, TimeUnit::MICROS))),
        Kind::Boolean => Type::primitive_type_builder(name, PhysicalType::BOOLEAN),
        Kind::Text => Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
            .with_logical_type(Some(LogicalType::String)),
    }
    .with_repetition(Repetition::OPTIONAL)
    .build()
}

fn copy_error(path: &Path, row: u64, reason: &str) -> ExportError {
    ExportError::Copy {
        path: path.to_owned(),
        row,
        reason: reason.to_owned(),
    }
}

fn parquet_error(path: &Path, error: ParquetError) -> ExportError {
    match error {
        ParquetError::External(error) => match error.downcast::<std::io::Error>() {
            Ok(error) => super::write_error(path, *error),
            Err(error) => super::write_error(path, std::io::Error::other(error)),
        },
        error => super::write_error(path, std::io::Error::other(error)),
    }
}

/// `text`, a numeric as PostgreSQL prints it (`-12.50`; never an exponent), as an integer of
/// `scale` decimal places, when that is exact and within [`PRECISION`] digits.
fn unscaled(text: &[u8], scale: u32) -> Result<i128, &'static str> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (whole, fraction) = match memchr::memchr(b'.', digits) {
        Some(at) => (&digits[..at], &digits[at + 1..]),
        None => (digits, &digits[digits.len()..]),
    };
    if whole.is_empty() && fraction.is_empty()
        || !whole.iter().chain(fraction).all(u8::is_ascii_digit)
    {
        return Err("is not a finite number");
    }
    let too_long = "needs more than DECIMAL(38)'s 38 digits at the column's scale";
    if fraction.len() > scale as usize {
        return Err(too_long);
    }
    let limit = 10i128.pow(PRECISION);
    let mut value: i128 = 0;
    let padding = std::iter::repeat_n(&b'0', scale as usize - fraction.len());
    for digit in whole.iter().chain(fraction).chain(padding) {
        value = value
            .checked_mul(10)
            .and_then(|value| value.checked_add(i128::from(digit - b'0')))
            .filter(|value| *value < limit)
            .ok_or(too_long)?;
    }
    Ok(if negative { -value } else { value })
}

/// Appends `field` of COPY's text format to `out`, its backslash escapes undone.
fn unescape(field: &[u8], out: &mut Vec<u8>) {
    let mut rest = field;
    while let Some(at) = memchr::memchr(b'\\', rest) {
        out.extend_from_slice(&rest[..at]);
        let Some(&escaped) = rest.get(at + 1) else {
            rest = &rest[at + 1..];
            break;
        };
        out.push(match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            other => other,
        });
        rest = &rest[at + 2..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    /// COPY's text escaping, as PostgreSQL's `CopyAttributeOutText` does it.
    fn escape(text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\u{b}' => out.push_str("\\v"),
                c => out.push(c),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn text_escapes_are_undone(text in "\\PC*|[\\\\\t\n\r\u{8}\u{b}\u{c}a]*") {
            let mut out = Vec::new();
            unescape(escape(&text).as_bytes(), &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), text);
        }

        /// Every decimal that fits is exact at any scale at least its own.
        #[test]
        fn decimals_are_exact(mantissa in any::<i64>(), own in 0u32..=18, extra in 0u32..=19) {
            let value = Decimal::new(mantissa, own);
            let scale = own + extra;
            let unscaled = unscaled(value.to_string().as_bytes(), scale).unwrap();
            prop_assert_eq!(unscaled, i128::from(mantissa) * 10i128.pow(extra));
        }
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        assert_eq!(unscaled(b"-0.50", 2), Ok(-50));
        assert_eq!(unscaled(b"12", 3), Ok(12_000));
        assert!(unscaled(b"0.125", 2).is_err(), "would round");
        assert!(unscaled(&[b'9'; 38], 0).is_ok());
        assert!(unscaled(&[b'9'; 39], 0).is_err());
        assert!(unscaled(b"1", 38).is_err());
        for text in ["NaN", "Infinity", "-Infinity", "", "-", "."] {
            assert!(unscaled(text.as_bytes(), 2).is_err(), "{text}");
        }
    }
}
