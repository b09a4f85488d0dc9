//! The budgets page: each budget of the tenant with its current period's
//! limit, settled spend, open reservations and what remains (a bar drawn
//! as SVG, no script, no inline style), and the tenant's spend per UTC day
//! over the last 30 days as a server-rendered SVG bar chart. Read from the
//! node's SQLite database (the LLM gateway's `gateway_calls`).

use crate::html::esc;
use crate::pages::{Session, html_page};
use crate::{Dash, DashError};
use airlock_types::Timestamp;
use axum::extract::State;
use axum::response::Response;
use std::fmt::Write as _;
use std::sync::Arc;

const DAY: i64 = 86_400_000_000;
/// Days in the chart, today included.
const DAYS: i64 = 30;

/// Micro-USD as dollars: at least cents, more digits only when there are
/// some (`$1.50`, `$0.000125`, `-$2.00`).
pub(crate) fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let frac = format!("{:06}", m % 1_000_000);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.len() < 2 {
        format!("{frac:0<2}")
    } else {
        frac.to_owned()
    };
    format!("{sign}${}.{frac}", m / 1_000_000)
}

/// `part` of `whole` in `0..=width`, rounded down (0 when `whole` is 0).
fn share(part: i64, whole: i64, width: i64) -> i64 {
    if whole <= 0 || part <= 0 {
        return 0;
    }
    let w = i128::from(part) * i128::from(width) / i128::from(whole);
    i64::try_from(w.min(i128::from(width))).unwrap_or(width)
}

/// A budget's bar: spent, then reserved, over the limit's width.
fn bar(limit: i64, spent: i64, reserved: i64) -> String {
    const W: i64 = 200;
    let s = share(spent, limit, W);
    let r = share(reserved, limit, W).min(W - s);
    format!(
        "<svg class=\"bar\" width=\"{W}\" height=\"12\" viewBox=\"0 0 {W} 12\" role=\"img\" aria-label=\"{}\">\
         <rect class=\"track\" x=\"0\" y=\"0\" width=\"{W}\" height=\"12\"/>\
         <rect class=\"spent\" x=\"0\" y=\"0\" width=\"{s}\" height=\"12\"/>\
         <rect class=\"reserved\" x=\"{s}\" y=\"0\" width=\"{r}\" height=\"12\"/></svg>",
        esc(&format!(
            "{} spent, {} reserved of {}",
            usd(spent),
            usd(reserved),
            usd(limit)
        ))
    )
}

/// The spend per day from `first` (a day's start) for [`DAYS`] days as an
/// SVG bar chart; `daily`: (day start, micro-USD), any order.
pub(crate) fn chart(first: i64, daily: &[(i64, i64)]) -> String {
    const BAR: i64 = 20;
    const H: i64 = 120;
    let amount = |day: i64| {
        daily
            .iter()
            .filter(|(d, _)| *d == day)
            .map(|(_, m)| *m)
            .sum::<i64>()
    };
    let max = (0..DAYS)
        .map(|i| amount(first + i * DAY))
        .max()
        .unwrap_or(0);
    let width = DAYS * BAR;
    let mut s = format!(
        "<svg id=\"daily\" class=\"chart\" width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\" role=\"img\" aria-label=\"spend per day, last {DAYS} days\">",
        H + 20,
        H + 20
    );
    for i in 0..DAYS {
        let day = first + i * DAY;
        let m = amount(day);
        let h = share(m, max, H);
        let date = crate::html::time(day);
        let date = date.get(..10).unwrap_or(&date);
        let _ = write!(
            s,
            "<rect class=\"day\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\"><title>{date}: {}</title></rect>",
            i * BAR + 2,
            H - h,
            BAR - 4,
            usd(m)
        );
        let label = date.get(5..).unwrap_or(date);
        if i == DAYS - 1 {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>",
                width - 2,
                H + 15
            );
        } else if i % 7 == 0 && i + 4 < DAYS {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\">{label}</text>",
                i * BAR + 2,
                H + 15
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"2\" y=\"12\">max {}</text></svg>",
        esc(&usd(max))
    );
    s
}

pub(crate) async fn budgets(State(d): State<Arc<Dash>>, s: Session) -> Result<Response, DashError> {
    let now = Timestamp::now().as_micros();
    let Some(store) = d.approvals.clone() else {
        return shared_budgets(&d, &s, now).await;
    };
    let first = now - now.rem_euclid(DAY) - (DAYS - 1) * DAY;
    let t = s.tenant.clone();
    let (rows, daily) = tokio::task::spawn_blocking(move || {
        let g = store
            .lock()
            .map_err(|_| DashError::Internal("store lock poisoned".into()))?;
        let rows = g
            .gateway_budget_spend(&t, now)
            .map_err(|e| DashError::Internal(e.to_string()))?;
        let daily = g
            .gateway_daily_spend(&t, first)
            .map_err(|e| DashError::Internal(e.to_string()))?;
        Ok::<_, DashError>((rows, daily))
    })
    .await
    .map_err(|e| DashError::Internal(format!("budgets task: {e}")))??;
    let mut b = String::from(
        "<p>Each budget's current period (UTC): settled charges, reservations of calls still in flight, and what remains. \
         Set a budget with <code>PUT /v1/budgets/SCOPE</code>.</p>\n\
         <table id=\"budgets\"><thead><tr><th>Scope</th><th>Period</th><th>Limit</th><th>Spent</th><th>Reserved</th><th>Remaining</th><th></th></tr></thead><tbody>\n",
    );
    for r in &rows {
        let limit = r.budget.limit_micros;
        let remaining = limit
            .saturating_sub(r.spent_micros)
            .saturating_sub(r.reserved_micros);
        let _ = writeln!(
            b,
            "<tr id=\"budget-{scope}\"><td class=\"mono\">{scope}</td><td>{}</td><td class=\"limit\">{}</td><td class=\"spent\">{}</td><td class=\"reserved\">{}</td><td class=\"remaining{}\">{}</td><td>{}</td></tr>",
            esc(&r.budget.period),
            usd(limit),
            usd(r.spent_micros),
            usd(r.reserved_micros),
            if remaining < 0 { " bad" } else { "" },
            usd(remaining),
            bar(limit, r.spent_micros, r.reserved_micros),
            scope = esc(&r.budget.scope),
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=\"7\" id=\"none\">No budgets set.</td></tr>\n");
    }
    b.push_str("</tbody></table>\n<h2>Spend per day (UTC), last 30 days</h2>\n");
    b.push_str(&chart(first, &daily));
    Ok(html_page("Budgets", &s, &b))
}

/// With a PostgreSQL control store: the budgets every replica shares
/// (`/v1/budgets`), their limit and use (settled plus reserved) in the
/// current period; no daily chart (that needs this node's gateway store).
async fn shared_budgets(d: &Arc<Dash>, s: &Session, now: i64) -> Result<Response, DashError> {
    let t = s.tenant.clone();
    let rows = d.api.db(move |c| c.budget_list(&t, now)).await?;
    let mut b = String::from(
        "<p>The budgets every replica shares, in their current period (UTC): what is used (settled and reserved) and what remains. \
         Set a budget with <code>PUT /v1/budgets/SCOPE</code>.</p>\n\
         <table id=\"budgets\"><thead><tr><th>Scope</th><th>Period</th><th>Limit</th><th>Used</th><th>Remaining</th><th></th></tr></thead><tbody>\n",
    );
    for r in &rows {
        let remaining = r.limit_micros.saturating_sub(r.used_micros);
        let _ = writeln!(
            b,
            "<tr id=\"budget-{scope}\"><td class=\"mono\">{scope}</td><td>{}</td><td class=\"limit\">{}</td><td class=\"used\">{}</td><td class=\"remaining{}\">{}</td><td>{}</td></tr>",
            esc(&r.period),
            usd(r.limit_micros),
            usd(r.used_micros),
            if remaining < 0 { " bad" } else { "" },
            usd(remaining),
            bar(r.limit_micros, r.used_micros, 0),
            scope = esc(&r.scope),
        );
    }
    if rows.is_empty() {
        b.push_str("<tr><td colspan=\"6\" id=\"none\">No budgets set.</td></tr>\n");
    }
    b.push_str("</tbody></table>\n");
    Ok(html_page("Budgets", s, &b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_show_cents_and_only_the_digits_there_are() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(1_500_000), "$1.50");
        assert_eq!(usd(10_000_000), "$10.00");
        assert_eq!(usd(125), "$0.000125");
        assert_eq!(usd(-2_000_000), "-$2.00");
        assert_eq!(usd(i64::MIN), "-$9223372036854.775808");
    }

    #[test]
    fn bars_are_shares_of_the_limit_and_never_overflow_it() {
        assert_eq!(share(50, 100, 200), 100);
        assert_eq!(share(500, 100, 200), 200);
        assert_eq!(share(5, 0, 200), 0);
        assert_eq!(share(i64::MAX, 1, 200), 200);
        let b = bar(100, 90, 50);
        assert!(
            b.contains("class=\"spent\" x=\"0\" y=\"0\" width=\"180\""),
            "{b}"
        );
        assert!(
            b.contains("class=\"reserved\" x=\"180\" y=\"0\" width=\"20\""),
            "{b}"
        );
    }

    #[test]
    fn the_chart_has_a_bar_per_day_scaled_to_the_largest() {
        let c = chart(0, &[(DAY, 2_000_000), (3 * DAY, 1_000_000)]);
        assert_eq!(c.matches("<rect class=\"day\"").count(), 30);
        assert!(
            c.contains("height=\"120\"><title>1970-01-02: $2.00</title>"),
            "{c}"
        );
        assert!(
            c.contains("height=\"60\"><title>1970-01-04: $1.00</title>"),
            "{c}"
        );
        assert!(
            c.contains("height=\"0\"><title>1970-01-01: $0.00</title>"),
            "{c}"
        );
        assert!(!c.contains("style="), "no inline style (CSP)");
    }
}
