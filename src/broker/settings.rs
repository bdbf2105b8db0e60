//! A queue's settings: its limits, and its fairness groups' limits and
//! weights.

use std::collections::BTreeMap;

use super::{Broker, BrokerError, Result};
use crate::model::{GroupSettings, Lane, QueueName, QueueSettings};

/// Most groups one queue may give their own settings.
pub const MAX_GROUP_OVERRIDES: usize = 10_000;

/// A change to a queue's settings: `None` keeps a setting as it is,
/// `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsChange {
    pub max_running: Option<Option<u32>>,
    pub rate_limit: Option<Option<f64>>,
    pub paused: Option<bool>,
    pub group_max_running: Option<Option<u32>>,
    pub group_rate_limit: Option<Option<f64>>,
    pub strict_priority: Option<bool>,
    pub publish_output: Option<bool>,
    /// The fields copies published from now on keep for searches (empty:
    /// none).
    pub search_fields: Option<Vec<String>>,
    /// Groups' own settings, each replacing what that group had; `None`
    /// removes a group's.
    pub groups: Vec<(String, Option<GroupSettings>)>,
}

fn set<T>(slot: &mut Option<T>, to: Option<Option<T>>) {
    if let Some(v) = to {
        *slot = v;
    }
}

impl SettingsChange {
    /// Applies the change; refuses one that would leave the queue with more
    /// than `MAX_GROUP_OVERRIDES` groups of its own.
    pub fn apply(self, settings: &mut QueueSettings) -> Result<()> {
        set(&mut settings.max_running, self.max_running);
        set(&mut settings.rate_limit, self.rate_limit);
        set(&mut settings.group_max_running, self.group_max_running);
        set(&mut settings.group_rate_limit, self.group_rate_limit);
        if let Some(p) = self.paused {
            settings.paused = p;
        }
        if let Some(s) = self.strict_priority {
            settings.strict_priority = s;
        }
        if let Some(p) = self.publish_output {
            settings.publish_output = p;
        }
        if let Some(fields) = self.search_fields {
            crate::model::check_search_fields(&fields).map_err(|message| {
                BrokerError::InvalidSetting {
                    field: "searchFields",
                    message,
                }
            })?;
            settings.search_fields = fields;
        }
        let mut groups: BTreeMap<String, GroupSettings> = std::mem::take(&mut settings.groups);
        for (name, own) in self.groups {
            match own {
                Some(g) if g != GroupSettings::default() => {
                    groups.insert(name, g);
                }
                _ => {
                    groups.remove(&name);
                }
            }
        }
        if groups.len() > MAX_GROUP_OVERRIDES {
            return Err(BrokerError::InvalidSetting {
                field: "groups",
                message: format!(
                    "a queue may give at most {MAX_GROUP_OVERRIDES} groups settings of their own; this would make {}",
                    groups.len()
                ),
            });
        }
        settings.groups = groups;
        Ok(())
    }
}

impl Broker {
    /// Changes a queue's settings as `change` says. Workers waiting on the
    /// queue are woken (it may have been resumed, or a limit raised).
    pub async fn update_queue_settings(
        &self,
        queue: &QueueName,
        change: SettingsChange,
    ) -> Result<QueueSettings> {
        let mut settings = self.queue_settings(queue).await?;
        change.apply(&mut settings)?;
        self.store
            .put_queue_settings(queue, settings.clone())
            .await?;
        self.wakers.wake(&Lane::Queue(queue.clone()));
        Ok(settings)
    }

    /// A queue's limits (the defaults: none).
    pub async fn queue_settings(&self, queue: &QueueName) -> Result<QueueSettings> {
        Ok(self
            .all_queue_settings()
            .await?
            .remove(queue)
            .unwrap_or_default())
    }

    /// The limits of every queue that has some.
    pub async fn all_queue_settings(&self) -> Result<BTreeMap<QueueName, QueueSettings>> {
        Ok(self.store.queue_settings().await?.into_iter().collect())
    }
}
