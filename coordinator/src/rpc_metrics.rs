//! How long the coordinator takes to answer each gRPC method: a tower layer around the tonic
//! server records, per method, the time from a request to its response's head (for a stream, its
//! start) in a Prometheus histogram, `muster_grpc_request_duration_seconds`.
//!
//! Methods are the services' own (read from the descriptor set at start); any other path — a
//! client may send anything — counts as `other`, so callers cannot grow the metric's labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use prost::Message as _;

/// The histogram's upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations at or under each bound (not cumulative; summed when rendered).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// The latencies of every method, shared by the layer and `/metrics`.
#[derive(Debug)]
pub struct RpcLatencies {
    /// By "Service/Method"; every known method is there from the start (at zero).
    methods: Mutex<BTreeMap<String, Histogram>>,
}

impl RpcLatencies {
    /// One histogram per method of the services in `descriptor_set` (and `other`).
    pub fn new(descriptor_set: &[u8]) -> RpcLatencies {
        let mut methods = BTreeMap::new();
        if let Ok(set) = prost_types::FileDescriptorSet::decode(descriptor_set) {
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        methods.insert(
                            format!("{}.{}/{}", file.package(), service.name(), method.name()),
                            Histogram::default(),
                        );
                    }
                }
            }
        }
        methods.insert("other".to_owned(), Histogram::default());
        RpcLatencies {
            methods: Mutex::new(methods),
        }
    }

    fn observe(&self, path: &str, seconds: f64) {
        let mut methods = self
            .methods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = path.trim_start_matches('/');
        let key = if methods.contains_key(key) {
            key
        } else {
            "other"
        };
        if let Some(histogram) = methods.get_mut(key) {
            histogram.observe(seconds);
        }
    }

    /// Appends the histogram in Prometheus' text format.
    pub fn render(&self, text: &mut String) {
        let methods = self
            .methods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let metric = "muster_grpc_request_duration_seconds";
        let _ = writeln!(
            text,
            "# HELP {metric} Time from a gRPC request to its answer (a stream: to its start), by method."
        );
        let _ = writeln!(text, "# TYPE {metric} histogram");
        for (method, histogram) in methods.iter() {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "{metric}_bucket{{method=\"{method}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "{metric}_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                text,
                "{metric}_sum{{method=\"{method}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                text,
                "{metric}_count{{method=\"{method}\"}} {}",
                histogram.count
            );
        }
    }
}

/// The tower layer that times each request.
#[derive(Clone)]
pub struct RpcLatencyLayer(pub Arc<RpcLatencies>);

impl<S> tower::Layer<S> for RpcLatencyLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            latencies: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    latencies: Arc<RpcLatencies>,
}

impl<S, B> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let latencies = self.latencies.clone();
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            latencies.observe(&path, started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_timed_and_anything_else_is_other() {
        let latencies = RpcLatencies::new(muster_proto::FILE_DESCRIPTOR_SET);
        latencies.observe("/muster.v1.AdminService/ListHosts", 0.003);
        latencies.observe("/muster.v1.AdminService/ListHosts", 0.2);
        latencies.observe("/made.up/Path", 0.001);
        let mut text = String::new();
        latencies.render(&mut text);
        let method = "method=\"muster.v1.AdminService/ListHosts\"";
        for line in [
            format!("muster_grpc_request_duration_seconds_bucket{{{method},le=\"0.0025\"}} 0"),
            format!("muster_grpc_request_duration_seconds_bucket{{{method},le=\"0.005\"}} 1"),
            format!("muster_grpc_request_duration_seconds_bucket{{{method},le=\"0.25\"}} 2"),
            format!("muster_grpc_request_duration_seconds_count{{{method}}} 2"),
            "muster_grpc_request_duration_seconds_count{method=\"other\"} 1".to_owned(),
            "muster_grpc_request_duration_seconds_count{method=\"muster.v1.AgentService/ReportStatus\"} 0"
                .to_owned(),
        ] {
            assert!(text.contains(&line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("made.up"));
    }
}
