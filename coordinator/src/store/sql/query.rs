//! One way to run a query and to read a row's column, so that every database error says what
//! Muster was doing ([`StoreError::Database`]'s action) and a store method reads as its SQL.

use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Decode, Executor, Row, Type};

use super::{StoreError, database};

/// Statements this process sent to the database (queries, and each transaction's begin and end):
/// `/metrics` shows it as `muster_store_queries_total`, and `muster-bench` reads it.
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one statement sent.
pub(super) fn counted() {
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The statements this process has sent to the database since it started.
pub fn statements() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// sqlx's `execute` and `fetch_*`, each with the action its error names.
pub(super) trait Run<'q> {
    async fn run<'e, 'c: 'e, E>(
        self,
        executor: E,
        action: &'static str,
    ) -> Result<AnyQueryResult, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Any>;

    async fn row<'e, 'c: 'e, E>(
        self,
        executor: E,
        action: &'static str,
    ) -> Result<AnyRow, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Any>;

    async fn optional_row<'e, 'c: 'e, E>(
        self,
        executor: E,
        action: &'static str,
    ) -> Result<Option<AnyRow>, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Any>;

    async fn rows<'e, 'c: 'e, E>(
        self,
        executor: E,
        action: &'static str,
    ) -> Result<Vec<AnyRow>, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Any>;
}

impl<'q> Run<'q> for Query<'q, Any, AnyArguments<'q>> {
    async fn run<'e, 'c: 'e, E>(
        self,
        executor: E,
        action: &'static str,
    ) -> Result<AnyQueryResult, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Any>,
    {
        counted();
        self.execute(executor).await.map_err(database(action))
    }

    async fn row<'e, 'c: 'e, E>(
        self,
        executor: E,
        action: &'static str,
    ) -> Result<AnyRow, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Any>,
    {
        counted();
        self.fetch_one(executor).await.map_err(database(action))
    }

    async fn optional_row<'e, 'c: 'e, E>(
        self,
        executor: E,
        action: &'static str,
    ) -> Result<Option<AnyRow>, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Any>,
    {
        counted();
        self.fetch_optional(executor)
            .await
            .map_err(database(action))
    }

    async fn rows<'e, 'c: 'e, E>(
        self,
        executor: E,
        action: &'static str,
    ) -> Result<Vec<AnyRow>, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = Any>,
    {
        counted();
        self.fetch_all(executor).await.map_err(database(action))
    }
}

/// A row's column by name; a missing column or a value of another type is a database error
/// whose source names the column.
pub(super) trait Value {
    fn value<'r, T>(&'r self, name: &str) -> Result<T, StoreError>
    where
        T: Decode<'r, Any> + Type<Any>;
}

impl Value for AnyRow {
    fn value<'r, T>(&'r self, name: &str) -> Result<T, StoreError>
    where
        T: Decode<'r, Any> + Type<Any>,
    {
        self.try_get(name).map_err(database("read a row"))
    }
}
