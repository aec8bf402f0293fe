//! `muster events`: the audit log.

use super::*;

#[derive(Debug, Serialize)]
pub(super) struct EventView {
    pub(super) id: i64,
    pub(super) at: String,
    pub(super) kind: String,
    pub(super) cluster: String,
    pub(super) host: String,
    pub(super) actor: String,
    pub(super) message: String,
}

impl From<v1::Event> for EventView {
    fn from(event: v1::Event) -> Self {
        EventView {
            id: event.id,
            at: format_time(event.at_unix_ms),
            kind: event.kind,
            cluster: event.cluster,
            host: event.host,
            actor: event.actor,
            message: event.message,
        }
    }
}

/// `muster events`.
pub(super) async fn events_command(
    cluster: Option<String>,
    limit: u32,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    if let Some(cluster) = &cluster {
        validate::name("cluster name", cluster)?;
    }
    let mut connection = connect(connection_args).await?;
    let request = v1::ListEventsRequest {
        cluster: cluster.unwrap_or_default(),
        limit,
    };
    let response = connection
        .client
        .list_events(request)
        .await
        .answer(&connection)?;
    let events: Vec<EventView> = response.events.into_iter().map(EventView::from).collect();
    if json {
        write_json(out, &events)?;
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|event| {
                vec![
                    event.at.clone(),
                    event.kind.clone(),
                    event.cluster.clone(),
                    event.host.clone(),
                    event.actor.clone(),
                    event.message.clone(),
                ]
            })
            .collect();
        write_table(
            out,
            &["TIME", "KIND", "CLUSTER", "HOST", "ACTOR", "MESSAGE"],
            &rows,
        )?;
    }
    Ok(())
}
