import Foundation
import GatewayCore

/// Usage of one tenant over a period, grouped one way. Billing counts signatures of ok
/// operations only; denied and failed ones are counted but never billed.
public struct UsageReport: Sendable {
    public enum Grouping: String, Sendable, CaseIterable {
        case day, month, client, credential, upstream, outcome, operation
        /// The stage and reason that stopped an operation (`-` for ok ones).
        case reason
    }

    public struct Line: Sendable, Equatable {
        public var key: String
        public var operations: Int
        public var ok: Int
        public var denied: Int
        public var failed: Int
        public var billedSignatures: Int
    }

    public var tenant: String
    public var from: Date
    public var to: Date
    public var grouping: Grouping
    public var lines: [Line]
    /// Billed signatures per UTC day (days since 1970) in the period, when asked for (`byDay`).
    public var billedByDay: [Int64: Int]?

    public init(tenant: String, from: Date, to: Date, grouping: Grouping, lines: [Line], billedByDay: [Int64: Int]? = nil) {
        self.tenant = tenant; self.from = from; self.to = to; self.grouping = grouping; self.lines = lines
        self.billedByDay = billedByDay
    }

    public var total: Line {
        lines.reduce(Line(key: "total", operations: 0, ok: 0, denied: 0, failed: 0, billedSignatures: 0)) {
            Line(key: "total", operations: $0.operations + $1.operations, ok: $0.ok + $1.ok, denied: $0.denied + $1.denied,
                 failed: $0.failed + $1.failed, billedSignatures: $0.billedSignatures + $1.billedSignatures)
        }
    }

    /// [from, to): `to` is excluded, so consecutive periods never count an event twice.
    public static func make(_ store: any LedgerStore, tenant: String, from: Date, to: Date, grouping: Grouping,
                            byDay: Bool = false) async throws -> UsageReport {
        let cells = try await store.usageCells(tenant: tenant, from: from, to: to, grouping: grouping, byDay: byDay)
        var report = UsageReport(tenant: tenant, from: from, to: to, grouping: grouping, cells: cells)
        if !(byDay || grouping == .day || grouping == .month) { report.billedByDay = nil }
        return report
    }

    /// Days since 1970-01-01 (UTC) of `date`.
    static func day(of date: Date) -> Int64 { Int64((date.timeIntervalSince1970 / 86400).rounded(.down)) }

    /// Sums cells into lines, sorted byte-wise by key (the same on every backend and collation).
    public init(tenant: String, from: Date, to: Date, grouping: Grouping, cells: [UsageCell]) {
        var byKey = [String: Line](), byDay = [Int64: Int]()
        for c in cells {
            let key = switch grouping {
            case .day: Self.dayKey(c.day)
            case .month: String(Self.dayKey(c.day).prefix(7))
            default: c.key
            }
            var l = byKey[key] ?? Line(key: key, operations: 0, ok: 0, denied: 0, failed: 0, billedSignatures: 0)
            l.operations += c.operations; l.ok += c.ok; l.denied += c.denied; l.failed += c.failed
            l.billedSignatures += c.billedSignatures
            byKey[key] = l
            byDay[c.day, default: 0] += c.billedSignatures
        }
        let lines = byKey.values.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
        self.init(tenant: tenant, from: from, to: to, grouping: grouping, lines: lines, billedByDay: byDay)
    }

    /// A SQLite ledger file, opened read-only.
    public static func make(path: String, tenant: String, from: Date, to: Date, grouping: Grouping) async throws -> UsageReport {
        try await make(SQLiteLedgerStore(path: path), tenant: tenant, from: from, to: to, grouping: grouping)
    }

    /// `YYYY-MM-DD` (UTC) of a day counted from 1970-01-01.
    static func dayKey(_ epochDay: Int64) -> String {
        // Civil-from-days (H. Hinnant): exact for any day, no formatter or calendar needed.
        let z = epochDay + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func pad(_ v: Int64, _ n: Int) -> String { String(repeating: "0", count: max(0, n - String(v).count)) + String(v) }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))"
    }

    public var csv: String {
        var out = "\(grouping.rawValue),operations,ok,denied,failed,billed_signatures\n"
        for l in lines + [total] {
            out += "\(Self.csvField(l.key)),\(l.operations),\(l.ok),\(l.denied),\(l.failed),\(l.billedSignatures)\n"
        }
        return out
    }

    /// Quotes fields and defuses spreadsheet formulas, since keys come from configuration.
    static func csvField(_ s: String) -> String {
        var v = s
        if let first = v.first, "=+-@".contains(first), v != "-" { v = "'" + v }
        if v.contains(",") || v.contains("\"") || v.contains("\n") { return "\"" + v.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
        return v
    }

    public var json: Data {
        let iso = ISO8601DateFormatter()
        func line(_ l: Line) -> [String: Any] {
            ["key": l.key, "operations": l.operations, "ok": l.ok, "denied": l.denied, "failed": l.failed,
             "billed_signatures": l.billedSignatures]
        }
        let object: [String: Any] = [
            "tenant": tenant, "from": iso.string(from: from), "to": iso.string(from: to), "group_by": grouping.rawValue,
            "lines": lines.map(line), "total": line(total),
        ]
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data()
    }
}

extension UsageReport {
    /// `YYYY-MM-DD` (midnight UTC) or an ISO 8601 time with zone; nil for anything else, so
    /// the CLI and the APIs refuse the same inputs.
    public static func parseDate(_ s: String) -> Date? {
        guard s.count <= 40 else { return nil }
        if let d = ISO8601DateFormatter().date(from: s) { return d }
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = withFraction.date(from: s) { return d }
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]), (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let date = calendar.date(from: DateComponents(year: y, month: m, day: d))
        // Refuse 2026-02-30 rather than roll it over into March.
        guard let date, calendar.component(.day, from: date) == d else { return nil }
        return date
    }
}
