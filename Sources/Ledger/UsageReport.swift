import Foundation
import GatewayCore
import GRDB

/// Usage of one tenant over a period, grouped one way. Billing counts signatures of ok
/// operations only; denied and failed ones are counted but never billed.
public struct UsageReport: Sendable {
    public enum Grouping: String, Sendable, CaseIterable {
        case day, client, credential, upstream, outcome, operation

        var sql: String {
            switch self {
            case .day: "strftime('%Y-%m-%d', time_ms / 1000, 'unixepoch')"
            case .client: "client"
            case .credential: "COALESCE(credential, '-')"
            case .upstream: "COALESCE(upstream, '-')"
            case .outcome: "outcome"
            case .operation: "operation"
            }
        }
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

    public var total: Line {
        lines.reduce(Line(key: "total", operations: 0, ok: 0, denied: 0, failed: 0, billedSignatures: 0)) {
            Line(key: "total", operations: $0.operations + $1.operations, ok: $0.ok + $1.ok, denied: $0.denied + $1.denied,
                 failed: $0.failed + $1.failed, billedSignatures: $0.billedSignatures + $1.billedSignatures)
        }
    }

    /// [from, to): `to` is excluded, so consecutive periods never count an event twice.
    public static func make(path: String, tenant: String, from: Date, to: Date, grouping: Grouping) throws -> UsageReport {
        var config = Configuration()
        config.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: config)
        let lines = try queue.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(grouping.sql) AS k, COUNT(*) AS n,
                  SUM(outcome = 'ok') AS ok, SUM(outcome = 'denied') AS denied, SUM(outcome = 'failed') AS failed,
                  SUM(CASE WHEN outcome = 'ok' THEN signatures ELSE 0 END) AS billed
                FROM usage_events WHERE tenant = ? AND time_ms >= ? AND time_ms < ?
                GROUP BY k ORDER BY k
                """, arguments: [tenant, Int64(from.timeIntervalSince1970 * 1000), Int64(to.timeIntervalSince1970 * 1000)])
            .map { Line(key: $0["k"] ?? "-", operations: $0["n"], ok: $0["ok"], denied: $0["denied"], failed: $0["failed"],
                        billedSignatures: $0["billed"]) }
        }
        return UsageReport(tenant: tenant, from: from, to: to, grouping: grouping, lines: lines)
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
