//! Join tokens (issued, counted, revoked, redeemed) and admin tokens.

use super::*;

impl SqlStore {
    pub(super) async fn fetch_join_token(
        &self,
        executor: impl Executor<'_, Database = Any>,
        id: &str,
    ) -> Result<Option<(JoinToken, String)>, StoreError> {
        let sql = self.sql(&format!("{JOIN_TOKEN_SELECT} WHERE t.id = $1"));
        let row = sqlx::query(&sql)
            .bind(id)
            .optional_row(executor, "read a join token")
            .await?;
        row.map(|row| {
            let secret_hash: String = row.value("secret_hash")?;
            Ok((join_token_from_row(&row)?, secret_hash))
        })
        .transpose()
    }

    /// Counts one use of a join token inside `transaction`, or says why it is refused. One
    /// conditional write decides: of several coordinators redeeming the last use at once, exactly
    /// one matches. (Comparing hashes in SQL leaks nothing useful about the secret.)
    pub(super) async fn redeem_in(
        &self,
        transaction: &mut PoolConnection<Any>,
        id: &str,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<JoinToken, StoreError> {
        let sql = self.sql(
            "UPDATE join_tokens SET uses = uses + 1
             WHERE id = $1 AND secret_hash = $2 AND revoked_at IS NULL AND expires_at > $3
                 AND (max_uses = 0 OR uses < max_uses)",
        );
        let updated = sqlx::query(&sql)
            .bind(id)
            .bind(secret_hash)
            .bind(now_ms)
            .run(&mut **transaction, "count a join token's use")
            .await?;
        let found = self.fetch_join_token(&mut **transaction, id).await?;
        let refused = |reason| StoreError::TokenRefused {
            id: id.to_owned(),
            reason,
        };
        let (token, stored_hash) = found.ok_or_else(|| refused(TokenRefusal::Unknown))?;
        if updated.rows_affected() == 1 {
            return Ok(token);
        }
        let reason = if !secrets::constant_time_eq(&stored_hash, secret_hash) {
            TokenRefusal::WrongSecret
        } else if token.revoked_at_ms.is_some() {
            TokenRefusal::Revoked
        } else if token.expires_at_ms <= now_ms {
            TokenRefusal::Expired
        } else {
            TokenRefusal::UsedUp
        };
        Err(refused(reason))
    }

    pub(super) async fn create_join_token(
        &self,
        new: NewJoinToken,
        actor: &Actor,
    ) -> Result<JoinToken, StoreError> {
        let cluster = self.get_cluster(&new.cluster).await?;
        let created_at_ms = now_ms();
        let sql = self.sql(
            "INSERT INTO join_tokens (id, cluster_id, secret_hash, roles, description, created_at,
                 expires_at, max_uses, uses, revoked_at, labels)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, NULL, $9)",
        );
        let labels = serde_json::to_string(&new.labels)
            .map_err(|error| StoreError::Corrupt(format!("join token labels: {error}")))?;
        let mut transaction = self.begin_write().await?;
        sqlx::query(&sql)
            .bind(&new.id)
            .bind(&cluster.id)
            .bind(&new.secret_hash)
            .bind(roles_to_text(&new.roles))
            .bind(&new.description)
            .bind(created_at_ms)
            .bind(new.expires_at_ms)
            .bind(i64::from(new.max_uses))
            .bind(&labels)
            .run(&mut **transaction, "create a join token")
            .await?;
        let message = format!(
            "join token {} created for roles [{}], {} use(s)",
            new.id,
            roles_to_text(&new.roles),
            if new.max_uses == 0 {
                "unlimited".to_owned()
            } else {
                new.max_uses.to_string()
            }
        );
        self.insert_event(
            &mut transaction,
            "token.created",
            &cluster.name,
            "",
            actor,
            &message,
        )
        .await?;
        transaction.commit("commit a new join token").await?;
        Ok(JoinToken {
            id: new.id,
            cluster: cluster.name,
            roles: new.roles,
            labels: new.labels,
            description: new.description,
            created_at_ms,
            expires_at_ms: new.expires_at_ms,
            max_uses: new.max_uses,
            uses: 0,
            revoked_at_ms: None,
        })
    }

    pub(super) async fn list_join_tokens(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<JoinToken>, StoreError> {
        let rows = match cluster {
            Some(cluster) => {
                let sql = self.sql(&format!(
                    "{JOIN_TOKEN_SELECT} WHERE c.name = $1 ORDER BY t.created_at DESC, t.id"
                ));
                sqlx::query(&sql)
                    .bind(cluster)
                    .rows(&self.pool, "list join tokens")
                    .await
            }
            None => {
                let sql = format!("{JOIN_TOKEN_SELECT} ORDER BY t.created_at DESC, t.id");
                sqlx::query(&sql).rows(&self.pool, "list join tokens").await
            }
        }?;
        rows.iter().map(join_token_from_row).collect()
    }

    pub(super) async fn revoke_join_token(
        &self,
        id: &str,
        actor: &Actor,
    ) -> Result<JoinToken, StoreError> {
        let revoked_at_ms = now_ms();
        let mut transaction = self.begin_write().await?;
        // The write comes first, so SQLite takes its write lock before anything is read.
        let sql =
            self.sql("UPDATE join_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL");
        let updated = sqlx::query(&sql)
            .bind(revoked_at_ms)
            .bind(id)
            .run(&mut **transaction, "revoke a join token")
            .await?;
        let (token, _) = self
            .fetch_join_token(&mut **transaction, id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "join token",
                name: id.to_owned(),
            })?;
        if updated.rows_affected() == 1 {
            let message = format!("join token {id} revoked");
            self.insert_event(
                &mut transaction,
                "token.revoked",
                &token.cluster,
                "",
                actor,
                &message,
            )
            .await?;
        }
        transaction.commit("commit a token's revocation").await?;
        Ok(token)
    }

    pub(super) async fn redeem_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<JoinToken, StoreError> {
        let mut transaction = self.begin_write().await?;
        match self
            .redeem_in(&mut transaction, id, secret_hash, now_ms)
            .await
        {
            Ok(token) => {
                transaction.commit("commit a join token's use").await?;
                Ok(token)
            }
            Err(error) => {
                transaction.rollback("roll back a join token's use").await?;
                Err(error)
            }
        }
    }

    pub(super) async fn add_admin_token(
        &self,
        id: &str,
        token_hash: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO admin_tokens (id, token_hash, description, created_at)
             VALUES ($1, $2, $3, $4)",
        );
        let mut transaction = self.begin_write().await?;
        sqlx::query(&sql)
            .bind(id)
            .bind(token_hash)
            .bind(description)
            .bind(now_ms())
            .run(&mut **transaction, "add an admin token")
            .await?;
        let actor = Actor("coordinator".to_owned());
        let message = format!("admin token {id} created ({description})");
        self.insert_event(
            &mut transaction,
            "admin-token.created",
            "",
            "",
            &actor,
            &message,
        )
        .await?;
        transaction.commit("commit an admin token").await?;
        Ok(())
    }

    pub(super) async fn find_admin_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<String>, StoreError> {
        let sql = self.sql("SELECT id FROM admin_tokens WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .optional_row(&self.pool, "look up an admin token")
            .await?;
        row.map(|row| row.value("id")).transpose()
    }
}
