import Foundation
import GatewayCore

/// A tenant's usage over a period with its invoice lines, and those of its sub-tenants when a
/// reseller asks: what `cscgate report`, `/admin/v1/reports` and `/tenant/v1/reports` return.
/// Which tenants it covers is decided by `UsageScope` before it is made.
public struct UsageStatement: Sendable {
    public struct Section: Sendable {
        public var report: UsageReport
        public var plan: TenantPlan?
        /// One per calendar month overlapping the period, each over the whole month; empty
        /// without a plan.
        public var invoices: [MonthlyInvoice]
    }

    public var from: Date
    public var to: Date
    public var grouping: UsageReport.Grouping
    /// The tenant asked for first, then its sub-tenants in name order.
    public var sections: [Section]

    /// One scan per tenant for the report (which also yields the daily billed counts the
    /// invoices need), plus one for any part of a month outside the period.
    public static func make(_ store: any LedgerStore, tenants: [String], plans: [String: TenantPlan], from: Date, to: Date,
                            grouping: UsageReport.Grouping) async throws -> UsageStatement {
        var sections = [Section]()
        let months = CalendarMonth.covering(from: from, to: to)
        for tenant in tenants {
            // Within one month the report's total is the month's share; days are needed only
            // to split a period that spans months.
            let report = try await UsageReport.make(store, tenant: tenant, from: from, to: to, grouping: grouping,
                                                    byDay: plans[tenant] != nil && months.count > 1)
            var invoices = [MonthlyInvoice]()
            if let plan = plans[tenant] {
                for month in months {
                    let firstDay = UsageReport.day(of: month.start), endDay = UsageReport.day(of: month.end)
                    var billed = report.billedByDay.map { days in
                        days.filter { $0.key >= firstDay && $0.key < endDay }.values.reduce(0, +)
                    } ?? report.total.billedSignatures
                    for (a, b) in [(month.start, min(from, month.end)), (max(to, month.start), month.end)] where a < b {
                        billed += try await store.usageCells(tenant: tenant, from: a, to: b, grouping: .outcome, byDay: false)
                            .reduce(0) { $0 + $1.billedSignatures }
                    }
                    invoices.append(.price(tenant: tenant, month: month.name, billedSignatures: billed, plan: plan))
                }
            }
            sections.append(Section(report: report, plan: plans[tenant], invoices: invoices))
        }
        return UsageStatement(from: from, to: to, grouping: grouping, sections: sections)
    }

    // MARK: JSON

    /// The first tenant's report at the top (as before invoices existed), its sub-tenants under
    /// `subtenants`. Money is written as decimal strings, never as floating-point numbers.
    public var json: Data {
        guard let first = sections.first else { return Data("{}".utf8) }
        var object = Self.sectionObject(first)
        let iso = ISO8601DateFormatter()
        object["from"] = iso.string(from: from)
        object["to"] = iso.string(from: to)
        object["group_by"] = grouping.rawValue
        object["subtenants"] = sections.dropFirst().map(Self.sectionObject)
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data()
    }

    static func lineObject(_ l: UsageReport.Line) -> [String: Any] {
        ["key": l.key, "operations": l.operations, "ok": l.ok, "denied": l.denied, "failed": l.failed,
         "billed_signatures": l.billedSignatures]
    }

    static func sectionObject(_ s: Section) -> [String: Any] {
        var o: [String: Any] = [
            "tenant": s.report.tenant, "lines": s.report.lines.map(lineObject), "total": lineObject(s.report.total),
        ]
        if let plan = s.plan {
            o["invoice"] = [
                "currency": plan.currency,
                "months": s.invoices.map(invoiceObject),
            ] as [String: Any]
        } else {
            o["invoice"] = NSNull()
        }
        return o
    }

    static func invoiceObject(_ m: MonthlyInvoice) -> [String: Any] {
        [
            "month": m.month, "currency": m.currency, "billed_signatures": m.billedSignatures,
            "lines": m.lines.map { l -> [String: Any] in
                ["item": l.item.rawValue, "quantity": l.quantity, "unit_price": Money.text(l.unitPrice, currency: m.currency),
                 "amount": Money.text(l.amount, currency: m.currency)]
            },
            "total_exact": Money.text(m.exactTotal, currency: m.currency), "total": Money.text(m.total, currency: m.currency),
        ]
    }

    // MARK: CSV

    /// Two tables separated by an empty line: usage lines (one `total` row per tenant), then
    /// invoice lines (one `total` row per tenant and month, rounded).
    public var csv: String {
        var out = "tenant,\(grouping.rawValue),operations,ok,denied,failed,billed_signatures\n"
        for s in sections {
            let t = UsageReport.csvField(s.report.tenant)
            for l in s.report.lines + [s.report.total] {
                out += "\(t),\(UsageReport.csvField(l.key)),\(l.operations),\(l.ok),\(l.denied),\(l.failed),\(l.billedSignatures)\n"
            }
        }
        out += "\ntenant,month,currency,item,quantity,unit_price,amount\n"
        for s in sections {
            let t = UsageReport.csvField(s.report.tenant)
            for m in s.invoices {
                for l in m.lines {
                    out += "\(t),\(m.month),\(m.currency),\(l.item.rawValue),\(l.quantity),"
                        + "\(Money.text(l.unitPrice, currency: m.currency)),\(Money.text(l.amount, currency: m.currency))\n"
                }
                out += "\(t),\(m.month),\(m.currency),total,\(m.billedSignatures),,\(Money.text(m.total, currency: m.currency))\n"
            }
        }
        return out
    }
}
