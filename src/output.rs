//! Query results as people and tools read them: an aligned text table for a terminal, JSON (an
//! array of objects), NDJSON (one object per line) or CSV (RFC 4180, via the `csv` crate).
//! [`RecordWriter`] writes records one at a time, so JSON, NDJSON and CSV of any size stream;
//! only the table, which aligns its columns, holds its rows until the end.

use crate::store::Table;
use serde::Serialize;
use serde_json::Value;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write through [`Watched`] found the reading end of its pipe closed.
static READER_GONE: AtomicBool = AtomicBool::new(false);

/// Standard output for results, buffered and [`Watched`].
pub fn stdout() -> io::BufWriter<Watched<io::StdoutLock<'static>>> {
    io::BufWriter::with_capacity(64 * 1024, Watched(io::stdout().lock()))
}

/// Whether a reader closed a pipe (stdout, or a FIFO written directly) that [`Watched`] wrote
/// to: the command then ends quietly with success, as ripgrep does, instead of reporting it.
pub fn reader_gone() -> bool {
    READER_GONE.load(Ordering::Relaxed)
}

/// A writer that remembers a closed pipe (`| head`); writes fail with `BrokenPipe` as usual.
pub struct Watched<W: Write>(pub W);

impl<W: Write> Watched<W> {
    fn watch<T>(r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            READER_GONE.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::watch(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Self::watch(self.0.flush())
    }
}

/// How results are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Ndjson,
    Csv,
}

/// Writes `table` to `w` in `format`.
pub fn write(w: &mut dyn Write, table: &Table, format: Format) -> io::Result<()> {
    if format == Format::Table {
        return write_text(w, table, "");
    }
    let mut out = RecordWriter::new(w, format, table.columns.clone())?;
    for row in &table.rows {
        out.row(row)?;
    }
    out.finish().map(|_| ())
}

/// Writes records one at a time under fixed columns: CSV rows after a header, NDJSON lines, the
/// elements of a pretty-printed JSON array, or (buffered) an aligned table. A record is a row of
/// cells, or, for commands whose JSON form is a whole document (a HighLevel contact), cells for
/// CSV and the table plus the document for JSON and NDJSON.
pub struct RecordWriter<W: Write> {
    sink: Sink<W>,
    columns: Vec<String>,
    written: u64,
}

enum Sink<W: Write> {
    Table { w: W, rows: Vec<Vec<Value>> },
    Json { w: W, empty: bool },
    Ndjson(W),
    // Boxed: the CSV writer carries its buffer state inline.
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> RecordWriter<W> {
    /// Starts the output (the CSV header; JSON's opening bracket comes with the first record).
    pub fn new(w: W, format: Format, columns: Vec<String>) -> io::Result<RecordWriter<W>> {
        let sink = match format {
            Format::Table => Sink::Table {
                w,
                rows: Vec::new(),
            },
            Format::Json => Sink::Json { w, empty: true },
            Format::Ndjson => Sink::Ndjson(w),
            Format::Csv => {
                let mut out = csv::Writer::from_writer(w);
                out.write_record(&columns)?;
                Sink::Csv(Box::new(out))
            }
        };
        Ok(RecordWriter {
            sink,
            columns,
            written: 0,
        })
    }

    /// One record: `cells` in column order (JSON and NDJSON get an object keyed by column).
    pub fn row(&mut self, cells: &[Value]) -> io::Result<()> {
        let row = Row {
            columns: &self.columns,
            values: cells,
        };
        self.sink.record(cells, &row)?;
        self.written += 1;
        Ok(())
    }

    /// One record: `cells` in the table and CSV, `document` itself in JSON and NDJSON.
    pub fn row_with_document<T: Serialize + ?Sized>(
        &mut self,
        cells: &[Value],
        document: &T,
    ) -> io::Result<()> {
        self.sink.record(cells, document)?;
        self.written += 1;
        Ok(())
    }

    /// How many records were written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Ends the output (the table itself; JSON's closing bracket), flushes it, and returns the
    /// writer.
    pub fn finish(self) -> io::Result<W> {
        let mut w = match self.sink {
            Sink::Table { mut w, rows } => {
                let table = Table {
                    columns: self.columns,
                    rows,
                    truncated: false,
                };
                write_text(&mut w, &table, "")?;
                w
            }
            Sink::Json { mut w, empty } => {
                w.write_all(if empty { b"[]\n" } else { b"\n]\n" })?;
                w
            }
            Sink::Ndjson(w) => w,
            Sink::Csv(out) => out.into_inner().map_err(|e| e.into_error())?,
        };
        w.flush()?;
        Ok(w)
    }
}

impl<W: Write> Sink<W> {
    fn record<T: Serialize + ?Sized>(&mut self, cells: &[Value], document: &T) -> io::Result<()> {
        match self {
            Sink::Table { rows, .. } => rows.push(cells.to_vec()),
            Sink::Json { w, empty } => {
                // Each element pretty-printed and indented: the same text as pretty-printing
                // the whole array, without holding it. JSON strings hold no raw newlines.
                let text = serde_json::to_string_pretty(document)?;
                w.write_all(if *empty { b"[\n  " } else { b",\n  " })?;
                w.write_all(text.replace('\n', "\n  ").as_bytes())?;
                *empty = false;
            }
            Sink::Ndjson(w) => {
                serde_json::to_writer(&mut *w, document)?;
                w.write_all(b"\n")?;
            }
            Sink::Csv(out) => out.write_record(cells.iter().map(plain))?,
        }
        Ok(())
    }
}

/// Field/value pairs as two aligned columns, every value in full (newlines become spaces): one
/// record read top to bottom.
pub fn write_pairs(w: &mut dyn Write, pairs: &[(String, String)]) -> io::Result<()> {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in pairs {
        let v = v.replace(['\n', '\r', '\t'], " ");
        writeln!(w, "{}", format!("{k:<width$}  {v}").trim_end())?;
    }
    Ok(())
}

/// An aligned text table, each line prefixed by `indent`; long cells are cut at 40 characters.
pub fn write_text(w: &mut dyn Write, table: &Table, indent: &str) -> io::Result<()> {
    let cell = |v: &Value| -> String {
        let s = match v {
            Value::Null => "NULL".to_string(),
            v => plain(v),
        };
        let s = s.replace(['\n', '\r', '\t'], " ");
        if s.chars().count() > 40 {
            format!("{}…", s.chars().take(39).collect::<String>())
        } else {
            s
        }
    };
    let rows: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|r| r.iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = table.columns.iter().map(|c| c.chars().count()).collect();
    for r in &rows {
        for (i, v) in r.iter().enumerate() {
            widths[i] = widths[i].max(v.chars().count());
        }
    }
    let line = |vals: &[String]| -> String {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    writeln!(w, "{indent}{}", line(&table.columns))?;
    for r in &rows {
        writeln!(w, "{indent}{}", line(r))?;
    }
    Ok(())
}

/// A row as a JSON object keyed by column name, in column order.
struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.columns.len()))?;
        for (c, v) in self.columns.iter().zip(self.values) {
            m.serialize_entry(c, v)?;
        }
        m.end()
    }
}

/// A value as plain text: strings unquoted, NULL empty, numbers and booleans as JSON writes them.
pub fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        Table {
            columns: vec!["id".into(), "name".into(), "n".into()],
            rows: vec![
                vec!["a".into(), "Zoë, \"Z\"".into(), 3.into()],
                vec!["b".into(), Value::Null, 1.5.into()],
            ],
            truncated: false,
        }
    }

    fn render(format: Format) -> String {
        let mut out = Vec::new();
        write(&mut out, &sample(), format).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_format_keeps_types_and_quotes_what_it_must() {
        assert_eq!(
            render(Format::Csv),
            "id,name,n\na,\"Zoë, \"\"Z\"\"\",3\nb,,1.5\n"
        );
        assert_eq!(
            render(Format::Ndjson),
            "{\"id\":\"a\",\"name\":\"Zoë, \\\"Z\\\"\",\"n\":3}\n{\"id\":\"b\",\"name\":null,\"n\":1.5}\n"
        );
        let json: Value = serde_json::from_str(&render(Format::Json)).unwrap();
        assert_eq!(json[1]["name"], Value::Null);
        assert_eq!(json[0]["n"], 3);
        assert_eq!(
            render(Format::Table),
            "id | name     | n\na  | Zoë, \"Z\" | 3\nb  | NULL     | 1.5\n"
        );
    }

    #[test]
    fn the_streamed_json_array_is_exactly_the_pretty_printed_array() {
        let t = sample();
        let objects: Vec<indexmap::IndexMap<String, Value>> = t
            .rows
            .iter()
            .map(|r| t.columns.iter().cloned().zip(r.iter().cloned()).collect())
            .collect();
        let mut whole = serde_json::to_string_pretty(&objects).unwrap();
        whole.push('\n');
        assert_eq!(render(Format::Json), whole);
        let empty = Table {
            rows: Vec::new(),
            ..sample()
        };
        let mut out = Vec::new();
        write(&mut out, &empty, Format::Json).unwrap();
        assert_eq!(out, b"[]\n");
        write(&mut out, &empty, Format::Csv).unwrap();
        assert_eq!(out, b"[]\nid,name,n\n");
    }

    #[test]
    fn a_record_with_a_document_writes_the_document_as_json_and_the_cells_elsewhere() {
        let doc = serde_json::json!({"id": "a", "tags": ["x", "y"]});
        let render = |format| {
            let mut w =
                RecordWriter::new(Vec::new(), format, vec!["id".into(), "tags".into()]).unwrap();
            w.row_with_document(&["a".into(), "x, y".into()], &doc)
                .unwrap();
            assert_eq!(w.written(), 1);
            String::from_utf8(w.finish().unwrap()).unwrap()
        };
        assert_eq!(render(Format::Csv), "id,tags\na,\"x, y\"\n");
        assert_eq!(
            render(Format::Ndjson),
            "{\"id\":\"a\",\"tags\":[\"x\",\"y\"]}\n"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&render(Format::Json)).unwrap(),
            serde_json::json!([doc])
        );
        assert_eq!(render(Format::Table), "id | tags\na  | x, y\n");
    }

    #[test]
    fn pairs_line_up_and_keep_long_values_whole() {
        let long = "x".repeat(60);
        let mut out = Vec::new();
        write_pairs(
            &mut out,
            &[
                ("id".into(), "a".into()),
                ("firstName".into(), "two\nlines".into()),
                ("notes".into(), long.clone()),
                ("empty".into(), String::new()),
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("id         a\nfirstName  two lines\nnotes      {long}\nempty\n")
        );
    }
}
