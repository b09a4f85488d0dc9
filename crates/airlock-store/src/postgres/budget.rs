//! Budgets shared by replicas. Every change is ONE statement, so the check
//! and the reservation cannot be separated by another replica's write: the
//! row lock the `UPDATE` takes serializes reservations of one budget, and
//! the `WHERE` re-evaluates on the latest row version (READ COMMITTED), so
//! the sum of what is spent and reserved never passes the limit.

use super::{PgStore, tenant_eq};
use crate::StoreError;
use airlock_types::TenantId;

/// One budget's counters, micro-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgBudget {
    /// The limit.
    pub limit_micros: i64,
    /// Settled charges.
    pub spent_micros: i64,
    /// Open reservations.
    pub reserved_micros: i64,
}

fn budget(r: &postgres::Row) -> Result<PgBudget, postgres::Error> {
    Ok(PgBudget {
        limit_micros: r.try_get(0)?,
        spent_micros: r.try_get(1)?,
        reserved_micros: r.try_get(2)?,
    })
}

impl PgStore {
    /// Create or change a budget's limit (`scope` as in the gateway:
    /// `org`, `team:NAME`, `agent:NAME`, `key:ID`). Counters are kept.
    pub fn budget_set(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        limit_micros: i64,
    ) -> Result<(), StoreError> {
        self.tx(Some(tenant), true, "budget set", |c| {
            c.execute(
                "INSERT INTO budgets (tenant, scope, limit_micros) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, scope) DO UPDATE SET limit_micros = EXCLUDED.limit_micros",
                &[&tenant.as_str(), &scope, &limit_micros],
            )?;
            Ok(())
        })
    }

    /// A budget's counters, if it exists.
    pub fn budget(&self, tenant: &TenantId, scope: &str) -> Result<Option<PgBudget>, StoreError> {
        self.tx(Some(tenant), false, "budget", |c| {
            Ok(c.query_opt(
                concat!(
                    "SELECT limit_micros, spent_micros, reserved_micros FROM budgets WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND scope = $2"
                ),
                &[&tenant.as_str(), &scope],
            )?
            .map(|r| budget(&r))
            .transpose()?)
        })
    }

    /// Reserve `micros` of a budget's headroom in one statement: the
    /// counters after the reservation, or `None` when the budget does not
    /// exist or has less headroom than that (nothing reserved).
    pub fn budget_reserve(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        micros: i64,
    ) -> Result<Option<PgBudget>, StoreError> {
        if micros < 0 {
            return Ok(None);
        }
        self.tx(Some(tenant), true, "budget reserve", |c| {
            Ok(c.query_opt(
                concat!(
                    "UPDATE budgets SET reserved_micros = reserved_micros + $3 WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND scope = $2 AND spent_micros + reserved_micros + $3 <= limit_micros \
                     RETURNING limit_micros, spent_micros, reserved_micros"
                ),
                &[&tenant.as_str(), &scope, &micros],
            )?
            .map(|r| budget(&r))
            .transpose()?)
        })
    }

    /// Settle a reservation: release `reserved` and charge `actual` (which
    /// may be more than was reserved: the call already happened). One
    /// statement. Returns false when the budget does not exist.
    pub fn budget_settle(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        reserved: i64,
        actual: i64,
    ) -> Result<bool, StoreError> {
        self.tx(Some(tenant), true, "budget settle", |c| {
            let n = c.execute(
                concat!(
                    "UPDATE budgets SET reserved_micros = greatest(reserved_micros - $3::bigint, 0), \
                       spent_micros = spent_micros + greatest($4::bigint, 0) WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND scope = $2"
                ),
                &[&tenant.as_str(), &scope, &reserved, &actual],
            )?;
            Ok(n == 1)
        })
    }
}

impl crate::BudgetStore for PgStore {
    fn budget_list(
        &self,
        tenant: &TenantId,
        _now: i64,
    ) -> Result<Vec<crate::BudgetState>, StoreError> {
        self.tx(Some(tenant), false, "budget list", |c| {
            let rows = c.query(
                concat!(
                    "SELECT scope, period, limit_micros, spent_micros + reserved_micros \
                     FROM budgets WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " ORDER BY scope"
                ),
                &[&tenant.as_str()],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(crate::BudgetState {
                        scope: r.try_get(0)?,
                        period: r.try_get(1)?,
                        limit_micros: r.try_get(2)?,
                        used_micros: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    fn budget_put(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        period: &str,
        limit_micros: i64,
    ) -> Result<(), StoreError> {
        if period != "total" {
            return Err(StoreError::BudgetPeriod {
                period: period.to_owned(),
            });
        }
        self.budget_set(tenant, scope, limit_micros)
    }

    fn budget_reserve(
        &mut self,
        tenant: &TenantId,
        scope: &str,
        micros: i64,
        now: i64,
    ) -> Result<crate::Reserve, StoreError> {
        let micros = micros.max(0);
        self.tx(Some(tenant), true, "budget reserve", |c| {
            let state = |c: &mut postgres::Client, s: &str| -> Result<_, postgres::Error> {
                c.query_opt(
                    concat!(
                        "SELECT scope, period, limit_micros, spent_micros + reserved_micros \
                         FROM budgets WHERE ",
                        tenant_eq!("tenant", "$1"),
                        " AND scope = $2"
                    ),
                    &[&tenant.as_str(), &s],
                )?
                .map(|r| {
                    Ok(crate::BudgetState {
                        scope: r.try_get(0)?,
                        period: r.try_get(1)?,
                        limit_micros: r.try_get(2)?,
                        used_micros: r.try_get(3)?,
                    })
                })
                .transpose()
            };
            if state(c, scope)?.is_none() {
                return Ok(crate::Reserve::NoBudget);
            }
            // One statement per budget: the row lock serializes replicas and
            // the WHERE sees the latest counters.
            let take = concat!(
                "UPDATE budgets SET reserved_micros = reserved_micros + $3 WHERE ",
                tenant_eq!("tenant", "$1"),
                " AND scope = $2 AND spent_micros + reserved_micros + $3 <= limit_micros"
            );
            let give_back = concat!(
                "UPDATE budgets SET reserved_micros = reserved_micros - $3 WHERE ",
                tenant_eq!("tenant", "$1"),
                " AND scope = $2"
            );
            let org_too = scope != "org" && state(c, "org")?.is_some();
            if org_too && c.execute(take, &[&tenant.as_str(), &"org", &micros])? == 0 {
                let org = state(c, "org")?;
                return Ok(org.map_or(crate::Reserve::NoBudget, crate::Reserve::Exceeded));
            }
            let taken = c.query_opt(
                concat!(
                    "UPDATE budgets SET reserved_micros = reserved_micros + $3 WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND scope = $2 AND spent_micros + reserved_micros + $3 <= limit_micros \
                     RETURNING scope, period, limit_micros, spent_micros + reserved_micros"
                ),
                &[&tenant.as_str(), &scope, &micros],
            )?;
            let Some(row) = taken else {
                if org_too {
                    c.execute(give_back, &[&tenant.as_str(), &"org", &micros])?;
                }
                let own = state(c, scope)?;
                return Ok(own.map_or(crate::Reserve::NoBudget, crate::Reserve::Exceeded));
            };
            let budget = crate::BudgetState {
                scope: row.try_get(0)?,
                period: row.try_get(1)?,
                limit_micros: row.try_get(2)?,
                used_micros: row.try_get(3)?,
            };
            let id: i64 = c
                .query_one(
                    "INSERT INTO budget_reservations (tenant, scope, micros, org_too, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&tenant.as_str(), &scope, &micros, &org_too, &now],
                )?
                .try_get(0)?;
            Ok(crate::Reserve::Reserved { id, budget })
        })
    }

    fn budget_settle(
        &mut self,
        tenant: &TenantId,
        id: i64,
        actual: i64,
        _now: i64,
    ) -> Result<bool, StoreError> {
        let actual = actual.max(0);
        self.tx(Some(tenant), true, "budget settle", |c| {
            let Some(r) = c.query_opt(
                concat!(
                    "DELETE FROM budget_reservations WHERE ",
                    tenant_eq!("tenant", "$1"),
                    " AND id = $2 RETURNING scope, micros, org_too"
                ),
                &[&tenant.as_str(), &id],
            )?
            else {
                return Ok(false);
            };
            let (scope, micros, org_too): (String, i64, bool) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let settle = concat!(
                "UPDATE budgets SET reserved_micros = greatest(reserved_micros - $3::bigint, 0), \
                   spent_micros = spent_micros + $4::bigint WHERE ",
                tenant_eq!("tenant", "$1"),
                " AND scope = $2"
            );
            c.execute(settle, &[&tenant.as_str(), &scope, &micros, &actual])?;
            if org_too {
                c.execute(settle, &[&tenant.as_str(), &"org", &micros, &actual])?;
            }
            Ok(true)
        })
    }
}
