//! Query results as people and tools read them: an aligned text table for a terminal, JSON (an
//! array of objects), NDJSON (one object per line) or CSV (RFC 4180, via the `csv` crate).

use crate::store::Table;
use serde_json::Value;
use std::io::{self, Write};

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
    match format {
        Format::Table => write_text(w, table, ""),
        Format::Json => {
            let rows: Vec<Row<'_>> = rows(table).collect();
            serde_json::to_writer_pretty(&mut *w, &rows)?;
            writeln!(w)
        }
        Format::Ndjson => {
            for row in rows(table) {
                serde_json::to_writer(&mut *w, &row)?;
                writeln!(w)?;
            }
            Ok(())
        }
        Format::Csv => {
            let mut out = csv::Writer::from_writer(w);
            out.write_record(&table.columns)?;
            for row in &table.rows {
                out.write_record(row.iter().map(plain))?;
            }
            out.flush()
        }
    }
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

impl serde::Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.columns.len()))?;
        for (c, v) in self.columns.iter().zip(self.values) {
            m.serialize_entry(c, v)?;
        }
        m.end()
    }
}

fn rows(table: &Table) -> impl Iterator<Item = Row<'_>> {
    table.rows.iter().map(|r| Row {
        columns: &table.columns,
        values: r,
    })
}

/// A value as plain text: strings unquoted, NULL empty, numbers and booleans as JSON writes them.
fn plain(v: &Value) -> String {
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
}
