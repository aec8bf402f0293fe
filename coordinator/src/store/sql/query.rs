//! One way to run a query and to read a row's column, so that every database error says what
//! Muster was doing ([`StoreError::Database`]'s action) and a store method reads as its SQL.

use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Decode, Executor, Row, Type};

use super::{StoreError, database};

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
