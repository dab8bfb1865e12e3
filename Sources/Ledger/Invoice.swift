import Foundation
import GatewayCore

/// What a tenant owes for one calendar month (UTC) under its plan.
///
/// Arithmetic is `Decimal` throughout: each line is quantity × unit price, exact; the total is
/// the exact sum, rounded once, half up, to the currency's minor unit (2 decimals, 0 for JPY
/// and the like, 3 for BHD and the like). Lines are never rounded, so the rounded total is
/// never off by the sum of per-line roundings.
public struct MonthlyInvoice: Sendable, Equatable {
    public struct Line: Sendable, Equatable {
        public enum Item: String, Sendable {
            /// The plan's fixed monthly fee (quantity 1).
            case monthlyFee = "monthly_fee"
            /// Signatures up to `includedSignatures`, at `pricePerSignature`.
            case includedSignatures = "included_signatures"
            /// Signatures beyond `includedSignatures`, at `overagePrice`.
            case overageSignatures = "overage_signatures"
        }

        public var item: Item
        public var quantity: Int
        public var unitPrice: Decimal
        public var amount: Decimal
    }

    public var tenant: String
    /// `YYYY-MM`.
    public var month: String
    public var currency: String
    /// Signatures of ok operations in the whole month: the quantity billed.
    public var billedSignatures: Int
    public var lines: [Line]
    public var exactTotal: Decimal
    public var total: Decimal

    /// Prices one month's billed signatures. Always three lines, in the order of `Line.Item`,
    /// so a reader sees what the plan offered even when a line is zero.
    public static func price(tenant: String, month: String, billedSignatures: Int, plan: TenantPlan) -> MonthlyInvoice {
        let included = min(billedSignatures, plan.includedSignatures)
        let overage = max(0, billedSignatures - plan.includedSignatures)
        let lines = [
            Line(item: .monthlyFee, quantity: 1, unitPrice: plan.monthlyFee, amount: plan.monthlyFee),
            Line(item: .includedSignatures, quantity: included, unitPrice: plan.pricePerSignature,
                 amount: Decimal(included) * plan.pricePerSignature),
            Line(item: .overageSignatures, quantity: overage, unitPrice: plan.overagePrice,
                 amount: Decimal(overage) * plan.overagePrice),
        ]
        let exact = lines.reduce(Decimal(0)) { $0 + $1.amount }
        return MonthlyInvoice(tenant: tenant, month: month, currency: plan.currency, billedSignatures: billedSignatures,
                              lines: lines, exactTotal: exact, total: Money.round(exact, currency: plan.currency))
    }
}

/// Money as text: exact decimals, never through Double.
public enum Money {
    /// ISO 4217 minor units where they are not 2.
    static let minorUnits: [String: Int] = [
        "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0,
        "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
        "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    ]

    public static func scale(_ currency: String) -> Int { minorUnits[currency.uppercased()] ?? 2 }

    /// Half up (away from zero for the non-negative amounts plans produce).
    public static func round(_ value: Decimal, currency: String) -> Decimal {
        var input = value, output = Decimal()
        NSDecimalRound(&output, &input, scale(currency), .plain)
        return output
    }

    /// At least the currency's decimals, more when the exact value has them: `49.90`, `0.045`.
    public static func text(_ value: Decimal, currency: String) -> String {
        var s = value.description
        if s.hasPrefix(".") { s = "0" + s }
        let minimum = scale(currency)
        guard minimum > 0 else { return s }
        if let dot = s.firstIndex(of: ".") {
            let decimals = s.distance(from: s.index(after: dot), to: s.endIndex)
            if decimals < minimum { s += String(repeating: "0", count: minimum - decimals) }
        } else {
            s += "." + String(repeating: "0", count: minimum)
        }
        return s
    }
}

/// Calendar months in UTC, as `[start, end)` in days since 1970 and `YYYY-MM`.
enum CalendarMonth {
    /// Months that overlap `[from, to)`, each as a whole month.
    static func covering(from: Date, to: Date) -> [(name: String, start: Date, end: Date)] {
        var out = [(String, Date, Date)]()
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0) ?? calendar.timeZone
        guard var start = calendar.dateInterval(of: .month, for: from)?.start else { return [] }
        while start < to, out.count < 1200 {
            guard let end = calendar.date(byAdding: .month, value: 1, to: start) else { break }
            let c = calendar.dateComponents([.year, .month], from: start)
            let name = String(format: "%04d-%02d", c.year ?? 0, c.month ?? 0)
            out.append((name, start, end))
            start = end
        }
        return out
    }
}
