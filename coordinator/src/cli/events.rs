//! `muster events`: the audit log.

use super::*;

#[derive(Debug, Serialize)]
pub(super) struct EventView {
    pub(super) id: i64,
    pub(super) at: String,
    pub(super) kind: String,
    /// Empty for a host's own event (up, down, drained): see `clusters`.
    pub(super) cluster: String,
    /// The clusters it concerns: its cluster, or those its host has components in.
    pub(super) clusters: Vec<String>,
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
            clusters: event.clusters,
            host: event.host,
            actor: event.actor,
            message: event.message,
        }
    }
}

impl EventView {
    fn cells(&self) -> Vec<String> {
        vec![
            self.at.clone(),
            self.kind.clone(),
            self.clusters.join(","),
            self.host.clone(),
            self.actor.clone(),
            self.message.clone(),
        ]
    }
}

const EVENT_HEADERS: [&str; 6] = ["TIME", "KIND", "CLUSTER", "HOST", "ACTOR", "MESSAGE"];

/// `muster events [--follow]`.
pub(super) async fn events_command(
    cluster: Option<String>,
    limit: u32,
    follow: bool,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    if let Some(cluster) = &cluster {
        validate::name("cluster name", cluster)?;
    }
    let mut connection = connect(connection_args).await?;
    let request = v1::ListEventsRequest {
        cluster: cluster.clone().unwrap_or_default(),
        limit,
    };
    let response = connection
        .client
        .list_events(request)
        .await
        .answer(&connection)?;
    let mut events: Vec<EventView> = response.events.into_iter().map(EventView::from).collect();
    if !follow {
        if json {
            write_json(out, &events)?;
        } else {
            let rows: Vec<Vec<String>> = events.iter().map(EventView::cells).collect();
            write_table(out, &EVENT_HEADERS, &rows)?;
        }
        return Ok(());
    }
    // Following: the recent ones oldest first, then each new one as it comes, a line each (with
    // -o json an object a line).
    events.reverse();
    // The newest event shown; with none shown, 0 (the log was empty: follow it from its start).
    let mut last_id = events.last().map_or(0, |event| event.id);
    if !json {
        write_event_line(out, &EVENT_HEADERS.map(str::to_owned))?;
    }
    for event in &events {
        write_followed(out, event, json)?;
    }
    let mut failures = 0;
    loop {
        let request = v1::WatchEventsRequest {
            cluster: cluster.clone().unwrap_or_default(),
            after_id: Some(last_id),
        };
        let stream = match connection.client.watch_events(request).await {
            Ok(response) => {
                failures = 0;
                Some(response.into_inner())
            }
            Err(status) => match connection.status_error(&status) {
                CliError::Unreachable { detail, .. } => {
                    eprintln!("lost the coordinator ({detail}); reconnecting");
                    None
                }
                other => return Err(other),
            },
        };
        if let Some(mut stream) = stream {
            loop {
                match stream.message().await {
                    Ok(Some(event)) => {
                        let event = EventView::from(event);
                        last_id = event.id;
                        write_followed(out, &event, json)?;
                    }
                    Ok(None) => {
                        eprintln!("the coordinator ended the stream; reconnecting");
                        break;
                    }
                    Err(status) => {
                        eprintln!(
                            "lost the coordinator ({}); reconnecting",
                            transport_detail(&status)
                        );
                        break;
                    }
                }
            }
        }
        failures += 1;
        let delay = muster_proto::daemon::backoff(
            failures,
            Duration::from_millis(500),
            Duration::from_secs(5),
        );
        tokio::time::sleep(delay).await;
    }
}

fn write_followed(
    out: &mut impl std::io::Write,
    event: &EventView,
    json: bool,
) -> Result<(), CliError> {
    if json {
        let line = serde_json::to_string(event)
            .map_err(|error| CliError::Output(std::io::Error::other(error)))?;
        writeln!(out, "{line}")?;
    } else {
        write_event_line(out, &event.cells())?;
    }
    out.flush()?;
    Ok(())
}

/// One followed event: columns of fixed widths, as the table cannot know the widths ahead.
fn write_event_line(out: &mut impl std::io::Write, cells: &[String]) -> std::io::Result<()> {
    let [at, kind, clusters, host, actor, message] = cells else {
        return Ok(());
    };
    writeln!(
        out,
        "{at:<20}  {kind:<20}  {clusters:<12}  {host:<12}  {actor:<22}  {message}"
    )
}
