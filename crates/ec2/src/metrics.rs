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
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        Ok(Ec2Metrics {
            latency,
            errors,
            requests,
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

    /// Calls made for `action` so far.
    pub fn requests(&self, action: &str) -> u64 {
        self.requests.with_label_values(&[action]).get()
    }

    pub fn errors(&self, action: &str, code: &str) -> u64 {
        self.errors.with_label_values(&[action, code]).get()
    }
}
