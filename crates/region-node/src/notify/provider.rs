//! The push-provider boundary: where a notification for an offline phone
//! leaves the node. A real provider (APNs, FCM) implements [`PushProvider`];
//! the node ships a log adapter (the default) and a file adapter (tests,
//! demos), chosen by `[notifications] push`.

use std::future::Future;
use std::path::PathBuf;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

/// One push to one customer's phone.
#[derive(Debug, Clone, Serialize)]
pub struct PhonePush {
    pub customer: String,
    /// When the node handed it to the provider (node clock).
    pub sent_at: chrono::DateTime<chrono::Utc>,
    /// The notification, as the API shows it (`{id, at, kind, ...}`).
    pub notification: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("push provider: {0}")]
    Provider(String),
}

/// Sends pushes, one at a time, in the order given (the task calls it
/// with a timeout; an error is retried later).
pub trait PushProvider: Send + 'static {
    fn name(&self) -> &'static str;
    fn send(&mut self, push: &PhonePush) -> impl Future<Output = Result<(), PushError>> + Send;
}

/// Logs each push (`tracing`, info): development without a provider.
pub struct LogPush;

impl PushProvider for LogPush {
    fn name(&self) -> &'static str {
        "log"
    }

    async fn send(&mut self, push: &PhonePush) -> Result<(), PushError> {
        tracing::info!(
            customer = %push.customer,
            notification = %serde_json::Value::Object(push.notification.clone()),
            "phone push"
        );
        Ok(())
    }
}

/// Appends each push as one JSON line to a file (opened per push, so a
/// test may read or truncate it at any time).
pub struct FilePush {
    pub path: PathBuf,
}

impl PushProvider for FilePush {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn send(&mut self, push: &PhonePush) -> Result<(), PushError> {
        let io = |e: std::io::Error| PushError::Provider(format!("{}: {e}", self.path.display()));
        let mut line = serde_json::to_vec(push).map_err(|e| PushError::Provider(e.to_string()))?;
        line.push(b'\n');
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(io)?;
        file.write_all(&line).await.map_err(io)?;
        file.flush().await.map_err(io)
    }
}
