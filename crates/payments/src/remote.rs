//! [`HttpProcessor`]: the [`Provider`] port over HTTP, to a processor
//! shared by every payments instance (`--processor-url`; the one spoken
//! here is `payments sandbox-processor`, [`crate::processor`]).
//!
//! Anything but a processor's answer — a refused connection, a timeout, a
//! 5xx, a body it cannot read — is [`ProviderError::Unavailable`]: the
//! service then leaves the request unacknowledged and JetStream brings it
//! back, and the repeated call carries the same idempotency key, so a
//! capture the processor made before the failure is not made again.

use std::time::Duration;

use protocol::money::Money;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::processor::{Answer, Capture, ChargeBody, RefundBody};
use crate::provider::{Provider, ProviderError, ProviderOutcome};

/// Longest a processor call may take, in milliseconds, before it counts as
/// unavailable (the request is retried with the same idempotency key).
pub const PROCESSOR_TIMEOUT_MS: u64 = 30_000;

/// A processor at a base URL (`http://host:port`).
pub struct HttpProcessor {
    client: reqwest::Client,
    base: String,
}

impl HttpProcessor {
    pub fn new(base_url: &str) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(PROCESSOR_TIMEOUT_MS))
            .build()
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        Ok(HttpProcessor {
            client,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ProviderError> {
        let request = self.client.post(format!("{}{path}", self.base)).json(body);
        read(request.send().await).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ProviderError> {
        read(self.client.get(format!("{}{path}", self.base)).send().await).await
    }
}

/// The answer's body, or why there is none.
async fn read<T: DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, ProviderError> {
    let unavailable = |e: reqwest::Error| ProviderError::Unavailable(e.to_string());
    let response = sent.map_err(unavailable)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(ProviderError::Unavailable(format!(
            "processor answered {status}: {body}"
        )));
    }
    response.json().await.map_err(unavailable)
}

/// Path segment for a key: ids are `[A-Za-z0-9_-]`, so this only guards
/// against a key that is not one.
fn segment(key: &str) -> Result<&str, ProviderError> {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(key)
    } else {
        Err(ProviderError::Unavailable(format!(
            "idempotency key {key:?} is not a plain id"
        )))
    }
}

impl Provider for HttpProcessor {
    async fn charge(
        &self,
        idempotency_key: &str,
        amount: &Money,
        payment_method: &str,
    ) -> Result<ProviderOutcome, ProviderError> {
        let body = ChargeBody {
            idempotency_key: idempotency_key.to_string(),
            amount: amount.clone(),
            payment_method: payment_method.to_string(),
        };
        let answer: Answer = self.post("/v1/charges", &body).await?;
        Ok(answer.into())
    }

    async fn refund(
        &self,
        idempotency_key: &str,
        amount: &Money,
    ) -> Result<ProviderOutcome, ProviderError> {
        let body = RefundBody {
            idempotency_key: idempotency_key.to_string(),
            amount: amount.clone(),
        };
        let answer: Answer = self.post("/v1/refunds", &body).await?;
        Ok(answer.into())
    }

    async fn captured(&self, idempotency_key: &str) -> Result<Option<String>, ProviderError> {
        let key = segment(idempotency_key)?;
        let capture: Capture = self.get(&format!("/v1/captures/{key}")).await?;
        Ok(capture.reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::Book;
    use crate::processor::{router, Processor};
    use crate::provider::{Sandbox, SandboxRules, SANDBOX_DECLINE_TOKEN};
    use protocol::money::Currency;
    use std::sync::Arc;

    fn usd(amount_minor: i64) -> Money {
        Money::new(amount_minor, Currency::try_from("USD".to_string()).unwrap())
    }

    /// A sandbox processor on a free loopback port: its URL and its sandbox
    /// (the server runs until the test's runtime ends).
    async fn serve(dir: &std::path::Path) -> (String, Arc<Sandbox>) {
        let store = Book::open(dir).unwrap();
        let sandbox = Arc::new(Sandbox::new(store.db(), SandboxRules::default()).unwrap());
        let app = router(Processor {
            sandbox: sandbox.clone(),
            store,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/"), sandbox)
    }

    #[tokio::test]
    async fn two_callers_with_one_key_capture_once_through_the_processor() {
        let dir = tempfile::tempdir().unwrap();
        let (url, sandbox) = serve(dir.path()).await;
        let a = HttpProcessor::new(&url).unwrap();
        let b = HttpProcessor::new(&url).unwrap();
        assert_eq!(a.captured("o1").await.unwrap(), None);
        let amount = usd(1200);
        let (first, second) = tokio::join!(
            a.charge("o1", &amount, "tok_visa"),
            b.charge("o1", &amount, "tok_visa")
        );
        let approved = ProviderOutcome::Approved {
            reference: "sbx_ch_o1".into(),
        };
        assert_eq!(first.unwrap(), approved);
        assert_eq!(second.unwrap(), approved);
        assert_eq!(sandbox.entry("o1").charges, 1);
        assert_eq!(
            b.captured("o1").await.unwrap().as_deref(),
            Some("sbx_ch_o1")
        );

        let refunded = b.refund("o1", &usd(1200)).await.unwrap();
        assert!(matches!(refunded, ProviderOutcome::Approved { .. }));
        let declined = a
            .charge("o2", &usd(100), SANDBOX_DECLINE_TOKEN)
            .await
            .unwrap();
        assert!(matches!(declined, ProviderOutcome::Declined { .. }));
        let e = sandbox.entry("o1");
        assert_eq!((e.charges, e.refunds, e.amount), (1, 1, 0));
    }

    #[tokio::test]
    async fn an_unreachable_processor_is_unavailable_not_a_decline() {
        // A port nothing listens on: bound, then closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let p = HttpProcessor::new(&url).unwrap();
        let e = p.charge("o1", &usd(100), "tok_visa").await;
        assert!(matches!(e, Err(ProviderError::Unavailable(_))), "{e:?}");
    }
}
