//! Shadow scoring: a sampled share of a model's requests scored again by another model, off
//! the response path, and how far the two rankings agree exported as metrics.
//!
//! The shadow runs the same [`Pipeline`] under its own admission (a busy shadow skips the
//! request, counted as `skipped_overloaded`) and the same deadline; the client's answer is
//! never delayed or changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pipeline::Pipeline;
use super::{RerankError, RerankJob};
use crate::serving::registry::ServedModel;

impl Pipeline {
    /// Scores `job`'s documents with `shadow` and records how far its ranking agrees with
    /// the primary's (`primary`: raw scores by index).
    pub(super) async fn compare_with_shadow(
        self,
        primary_name: String,
        shadow: Arc<ServedModel>,
        job: RerankJob,
        primary: Vec<f32>,
    ) {
        let labels = [primary_name.as_str(), shadow.name()];
        let comparisons = |outcome: &str| {
            self.metrics
                .shadow_comparisons
                .with_label_values(&[labels[0], labels[1], outcome])
                .inc()
        };
        let deadline = Duration::from_millis(self.limits.request_timeout_ms);
        let outcome = tokio::time::timeout(deadline, self.run(&shadow, &job, Instant::now())).await;
        let outcome = match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => {
                let skipped = matches!(error, RerankError::Overloaded { .. });
                comparisons(if skipped {
                    "skipped_overloaded"
                } else {
                    "failed"
                });
                tracing::debug!(primary = labels[0], shadow = labels[1], error = %error.detail(),
                    "shadow scoring did not finish");
                return;
            }
            Err(_) => {
                comparisons("failed");
                return;
            }
        };
        let agreement = crate::agreement::compare(&primary, &outcome.logits);
        comparisons("compared");
        self.metrics
            .shadow_kendall_tau
            .with_label_values(&labels)
            .observe(agreement.kendall_tau);
        if agreement.top1_agrees {
            self.metrics
                .shadow_top1_agreements
                .with_label_values(&labels)
                .inc();
        }
    }
}
