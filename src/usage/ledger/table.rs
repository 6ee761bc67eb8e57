//! Tables described once for both stores. A `Table` lists its columns: name, SQL type, and how
//! a row struct reads and writes each one. SQLite and PostgreSQL derive from it their
//! `CREATE TABLE`, their column lists, their parameters and their row mapping, so the two
//! schemas and the two mappings cannot drift apart. `schema` holds the ledger's tables.
//!
//! Invariant: `create_table` lays a statement out exactly as the released migrations did (names
//! padded to the longest, one column a line), so a generated migration step can be compared with
//! the released text byte for byte (`schema` tests).

use postgres::types::ToSql as PgValue;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    Text,
    /// 64 bits: `BIGINT` in PostgreSQL, `INTEGER` in SQLite.
    BigInt,
    /// `INTEGER`: 32 bits in PostgreSQL, 64 in SQLite.
    Int,
    /// `BOOLEAN` in PostgreSQL, `INTEGER` 0/1 in SQLite.
    Bool,
}

impl SqlType {
    fn ddl(self, b: Backend) -> &'static str {
        match (self, b) {
            (SqlType::Text, _) => "TEXT",
            (SqlType::BigInt, Backend::Postgres) => "BIGINT",
            (SqlType::Bool, Backend::Postgres) => "BOOLEAN",
            (SqlType::Int, _) | (SqlType::BigInt | SqlType::Bool, Backend::Sqlite) => "INTEGER",
        }
    }

    /// The element type of a PostgreSQL array parameter (`UNNEST($1::text[], …)`).
    fn pg_array(self) -> &'static str {
        match self {
            SqlType::Text => "text",
            SqlType::BigInt => "int8",
            SqlType::Int => "int4",
            SqlType::Bool => "bool",
        }
    }
}

/// What a column may hold besides its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Constraint {
    Null,
    NotNull,
    PrimaryKey,
    Unique,
}

impl Constraint {
    fn ddl(self, b: Backend) -> &'static str {
        match (self, b) {
            (Constraint::Null, _) => "",
            (Constraint::NotNull, _) => " NOT NULL",
            // SQLite lets a primary key that is not an INTEGER hold NULL unless told otherwise.
            (Constraint::PrimaryKey, Backend::Sqlite) => " PRIMARY KEY NOT NULL",
            (Constraint::PrimaryKey, Backend::Postgres) => " PRIMARY KEY",
            (Constraint::Unique, _) => " NOT NULL UNIQUE",
        }
    }
}

/// One column of a `CREATE TABLE`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnDef<'a> {
    pub name: &'a str,
    pub ty: SqlType,
    pub constraint: Constraint,
}

/// `CREATE TABLE name (…);` and a newline. A table keyed by several columns (`primary_key`)
/// is a SQLite `WITHOUT ROWID` table: its rows live in the key's b-tree.
pub(crate) fn create_table(b: Backend, name: &str, columns: &[ColumnDef<'_>], primary_key: Option<&str>) -> String {
    let width = columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut lines: Vec<String> = columns
        .iter()
        .map(|c| format!("    {:<width$} {}{}", c.name, c.ty.ddl(b), c.constraint.ddl(b)))
        .collect();
    let mut rowid = "";
    if let Some(key) = primary_key {
        lines.push(format!("    PRIMARY KEY ({key})"));
        if b == Backend::Sqlite {
            rowid = " WITHOUT ROWID";
        }
    }
    format!("CREATE TABLE {name} (\n{}\n){rowid};\n", lines.join(",\n"))
}

/// How a column of a row struct `T` is read and written, by type. An `Opt…` column is nullable.
pub(crate) enum Field<T> {
    Text(fn(&T) -> &str, fn(&mut T, String)),
    OptText(fn(&T) -> Option<&str>, fn(&mut T, Option<String>)),
    BigInt(fn(&T) -> i64, fn(&mut T, i64)),
    OptBigInt(fn(&T) -> Option<i64>, fn(&mut T, Option<i64>)),
    /// Values beyond 32 bits are stored as the nearest `i32` in PostgreSQL.
    Int(fn(&T) -> i64, fn(&mut T, i64)),
    Bool(fn(&T) -> bool, fn(&mut T, bool)),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    No,
    Primary,
    Unique,
}

pub(crate) struct Column<T> {
    pub name: &'static str,
    pub field: Field<T>,
    key: Key,
    /// The schema version that added the column: 1 for the table's `CREATE TABLE`, later ones
    /// by an `ALTER TABLE … ADD COLUMN` step (`Table::add_columns`).
    since: u8,
}

impl<T> Column<T> {
    pub const fn new(name: &'static str, field: Field<T>) -> Column<T> {
        Column {
            name,
            field,
            key: Key::No,
            since: 1,
        }
    }

    pub const fn primary_key(name: &'static str, field: Field<T>) -> Column<T> {
        Column {
            name,
            field,
            key: Key::Primary,
            since: 1,
        }
    }

    /// Unique and not null.
    pub const fn unique(name: &'static str, field: Field<T>) -> Column<T> {
        Column {
            name,
            field,
            key: Key::Unique,
            since: 1,
        }
    }

    /// A column added by migration step `version` (> 1). It must be nullable (`Opt…`): rows
    /// written before it have no value.
    pub const fn added(version: u8, name: &'static str, field: Field<T>) -> Column<T> {
        Column {
            name,
            field,
            key: Key::No,
            since: version,
        }
    }

    pub fn ty(&self) -> SqlType {
        match self.field {
            Field::Text(..) | Field::OptText(..) => SqlType::Text,
            Field::BigInt(..) | Field::OptBigInt(..) => SqlType::BigInt,
            Field::Int(..) => SqlType::Int,
            Field::Bool(..) => SqlType::Bool,
        }
    }

    pub fn def(&self) -> ColumnDef<'static> {
        let nullable = matches!(self.field, Field::OptText(..) | Field::OptBigInt(..));
        let constraint = match self.key {
            Key::Primary => Constraint::PrimaryKey,
            Key::Unique => Constraint::Unique,
            Key::No if nullable => Constraint::Null,
            Key::No => Constraint::NotNull,
        };
        ColumnDef {
            name: self.name,
            ty: self.ty(),
            constraint,
        }
    }

    /// The row's value, as a SQLite parameter (text is borrowed, not copied).
    pub fn sqlite_value<'r>(&self, row: &'r T) -> ToSqlOutput<'r> {
        let int = |v: i64| ToSqlOutput::Owned(Value::Integer(v));
        let text = |v: &'r str| ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes()));
        match &self.field {
            Field::Text(get, _) => text(get(row)),
            Field::OptText(get, _) => get(row).map_or(ToSqlOutput::Owned(Value::Null), text),
            Field::BigInt(get, _) | Field::Int(get, _) => int(get(row)),
            Field::OptBigInt(get, _) => get(row).map_or(ToSqlOutput::Owned(Value::Null), int),
            Field::Bool(get, _) => int(i64::from(get(row))),
        }
    }

    /// The row's value, as a PostgreSQL parameter.
    pub fn pg_value<'r>(&self, row: &'r T) -> PgParam<'r> {
        match &self.field {
            Field::Text(get, _) => Box::new(get(row)),
            Field::OptText(get, _) => Box::new(get(row)),
            Field::BigInt(get, _) => Box::new(get(row)),
            Field::OptBigInt(get, _) => Box::new(get(row)),
            Field::Int(get, _) => Box::new(to_i32(get(row))),
            Field::Bool(get, _) => Box::new(get(row)),
        }
    }

    /// The rows' values, as one PostgreSQL array parameter (for `UNNEST`).
    pub fn pg_array<'r>(&self, rows: &[&'r T]) -> PgParam<'r> {
        fn each<'r, T, V>(rows: &[&'r T], f: impl Fn(&'r T) -> V) -> Vec<V> {
            rows.iter().map(|r| f(r)).collect()
        }
        match &self.field {
            Field::Text(get, _) => Box::new(each(rows, get)),
            Field::OptText(get, _) => Box::new(each(rows, get)),
            Field::BigInt(get, _) => Box::new(each(rows, get)),
            Field::OptBigInt(get, _) => Box::new(each(rows, get)),
            Field::Int(get, _) => Box::new(each(rows, |r| to_i32(get(r)))),
            Field::Bool(get, _) => Box::new(each(rows, get)),
        }
    }

    /// Sets the row's field from column `i` of a SQLite result row.
    pub fn sqlite_read(&self, r: &rusqlite::Row<'_>, i: usize, row: &mut T) -> rusqlite::Result<()> {
        match &self.field {
            Field::Text(_, set) => set(row, r.get(i)?),
            Field::OptText(_, set) => set(row, r.get(i)?),
            Field::BigInt(_, set) | Field::Int(_, set) => set(row, r.get(i)?),
            Field::OptBigInt(_, set) => set(row, r.get(i)?),
            Field::Bool(_, set) => set(row, r.get(i)?),
        }
        Ok(())
    }

    /// Sets the row's field from column `i` of a PostgreSQL result row.
    pub fn pg_read(&self, r: &postgres::Row, i: usize, row: &mut T) -> Result<(), postgres::Error> {
        match &self.field {
            Field::Text(_, set) => set(row, r.try_get(i)?),
            Field::OptText(_, set) => set(row, r.try_get(i)?),
            Field::BigInt(_, set) => set(row, r.try_get(i)?),
            Field::OptBigInt(_, set) => set(row, r.try_get(i)?),
            Field::Int(_, set) => set(row, i64::from(r.try_get::<_, i32>(i)?)),
            Field::Bool(_, set) => set(row, r.try_get(i)?),
        }
        Ok(())
    }
}

/// An owned PostgreSQL parameter; `pg_refs` makes the slice `query` takes.
pub(crate) type PgParam<'r> = Box<dyn PgValue + Sync + 'r>;

pub(crate) fn pg_refs<'a>(params: &'a [PgParam<'_>]) -> Vec<&'a (dyn PgValue + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn PgValue + Sync)).collect()
}

fn to_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

/// A table and the row struct its rows map to.
pub(crate) struct Table<T: 'static> {
    pub name: &'static str,
    pub columns: &'static [Column<T>],
}

impl<T: Default> Table<T> {
    /// The table as its first step made it (the columns of version 1).
    pub fn create(&self, b: Backend) -> String {
        let defs: Vec<ColumnDef<'_>> = self.columns.iter().filter(|c| c.since <= 1).map(Column::def).collect();
        create_table(b, self.name, &defs, None)
    }

    /// The `ALTER TABLE … ADD COLUMN` statements of migration step `version`.
    pub fn add_columns(&self, b: Backend, version: u8) -> String {
        self.columns
            .iter()
            .filter(|c| c.since == version)
            .map(|c| {
                let d = c.def();
                format!("ALTER TABLE {} ADD COLUMN {} {};\n", self.name, d.name, d.ty.ddl(b))
            })
            .collect()
    }

    /// `a, b, c`: every column, in order (every select and insert lists them so).
    pub fn column_list(&self) -> String {
        self.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    }

    /// Every column's value, in order, as SQLite parameters.
    pub fn sqlite_values<'r>(&self, row: &'r T) -> Vec<ToSqlOutput<'r>> {
        self.columns.iter().map(|c| c.sqlite_value(row)).collect()
    }

    /// A row selected with `column_list`.
    pub fn sqlite_read(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<T> {
        let mut row = T::default();
        for (i, c) in self.columns.iter().enumerate() {
            c.sqlite_read(r, i, &mut row)?;
        }
        Ok(row)
    }

    /// A row selected with `column_list`.
    pub fn pg_read(&self, r: &postgres::Row) -> Result<T, postgres::Error> {
        let mut row = T::default();
        for (i, c) in self.columns.iter().enumerate() {
            c.pg_read(r, i, &mut row)?;
        }
        Ok(row)
    }
}

/// Where an INSERT's rows come from, for columns of these types: one row of parameters (SQLite,
/// executed once a row), or one array parameter a column, unnested (PostgreSQL, executed once a
/// batch: see `Column::pg_array`).
pub(crate) fn insert_source(b: Backend, types: &[SqlType]) -> String {
    match b {
        Backend::Sqlite => format!("VALUES ({})", placeholders(b, types.len()).join(", ")),
        Backend::Postgres => {
            let arrays: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(i, ty)| format!("{}::{}[]", placeholder(b, i + 1), ty.pg_array()))
                .collect();
            format!("SELECT * FROM UNNEST({})", arrays.join(", "))
        }
    }
}

/// Placeholders `?1, ?2, …` (SQLite) or `$1, $2, …` (PostgreSQL) for `n` parameters.
pub(crate) fn placeholders(b: Backend, n: usize) -> Vec<String> {
    (1..=n).map(|i| placeholder(b, i)).collect()
}

pub(crate) fn placeholder(b: Backend, i: usize) -> String {
    match b {
        Backend::Sqlite => format!("?{i}"),
        Backend::Postgres => format!("${i}"),
    }
}
