use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// EC2 call metrics under the existing implementation's names.
#[derive(Clone)]
pub struct Ec2Metrics {
    /// `awscni_aws_api_latency_ms{api,error,status}`: ours is a histogram.
    latency: HistogramVec,
    /// `awscni_aws_api_error_count{api,error}`: error is the EC2 error code.
    errors: IntCounterVec,
    /// `awscni_ec2api_req_count{fn}`
    requests: IntCounterVec,
    /// `awscni_aws_api_attempt_error_count{api,error}`: every failed attempt, the ones the
    /// SDK retried included (ours; the calls above only count a call's final outcome).
    attempt_errors: IntCounterVec,
}

const LATENCY_BUCKETS_MS: [f64; 12] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

impl Ec2Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let latency = HistogramVec::new(
            HistogramOpts::new("awscni_aws_api_latency_ms", "AWS API call latency in ms")
                .buckets(LATENCY_BUCKETS_MS.to_vec()),
            &["api", "error", "status"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "awscni_aws_api_error_count",
                "AWS API calls that failed, by error code",
            ),
            &["api", "error"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new("awscni_ec2api_req_count", "EC2 API calls made"),
            &["fn"],
        )?;
        let attempt_errors = IntCounterVec::new(
            Opts::new(
                "awscni_aws_api_attempt_error_count",
                "AWS API call attempts that failed (retried ones included), by error code",
            ),
            &["api", "error"],
        )?;
        registry.register(Box::new(attempt_errors.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        Ok(Ec2Metrics {
            latency,
            errors,
            requests,
            attempt_errors,
        })
    }

    /// Metrics that go nowhere, for tools that do not export them.
    pub fn unregistered() -> Self {
        // Registering into a fresh registry cannot collide.
        Self::new(&Registry::new()).unwrap_or_else(|_| unreachable!("fresh registry"))
    }

    pub(crate) fn record(&self, action: &str, error_code: Option<&str>, status: u16, millis: f64) {
        self.requests.with_label_values(&[action]).inc();
        let failed = if error_code.is_some() {
            "true"
        } else {
            "false"
        };
        self.latency
            .with_label_values(&[action, failed, &status.to_string()])
            .observe(millis);
        if let Some(code) = error_code {
            self.errors.with_label_values(&[action, code]).inc();
        }
    }

    pub(crate) fn record_attempt_error(&self, action: &str, code: &str) {
        self.attempt_errors.with_label_values(&[action, code]).inc();
    }

    pub fn attempt_errors(&self, action: &str, code: &str) -> u64 {
        self.attempt_errors.with_label_values(&[action, code]).get()
    }

    /// Calls made for `action` so far.
    pub fn requests(&self, action: &str) -> u64 {
        self.requests.with_label_values(&[action]).get()
    }

    pub fn errors(&self, action: &str, code: &str) -> u64 {
        self.errors.with_label_values(&[action, code]).get()
    }
}

/// Counts every failed attempt of an SDK call; the SDK's retries are otherwise invisible.
#[derive(Clone)]
pub(crate) struct AttemptErrors(pub std::sync::Arc<Ec2Metrics>);

impl std::fmt::Debug for AttemptErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptErrors")
    }
}

/// The `<Code>` of an EC2 error body, else the HTTP status.
pub(crate) fn attempt_error_code(status: u16, body: Option<&[u8]>) -> String {
    let text = body.map(String::from_utf8_lossy).unwrap_or_default();
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("HTTP{status}"))
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for AttemptErrors {
    fn name(&self) -> &'static str {
        "AttemptErrors"
    }

    fn read_after_attempt(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_sdk_ec2::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let failed = matches!(context.output_or_error(), Some(Err(_)));
        if !failed {
            return Ok(());
        }
        let action = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        let code = match context.response() {
            Some(r) => attempt_error_code(r.status().as_u16(), r.body().bytes()),
            // No response at all: the connection failed or timed out.
            None => "NoResponse".to_string(),
        };
        self.0.record_attempt_error(&action, &code);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_error_is_named_by_its_code_or_status() {
        let body = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert_eq!(attempt_error_code(503, Some(body)), "RequestLimitExceeded");
        assert_eq!(attempt_error_code(500, Some(b"oops")), "HTTP500");
        assert_eq!(attempt_error_code(502, None), "HTTP502");
    }
}
