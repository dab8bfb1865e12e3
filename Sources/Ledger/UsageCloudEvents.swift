import CSC
import Foundation
import GatewayCore

/// Usage events as CloudEvents 1.0 (JSON, one per line) for external billing (OpenMeter,
/// Lago, Stripe meters). The CloudEvents id is the ledger's deterministic event id and every
/// field comes from the stored row, so exporting the same period twice gives the same lines
/// byte for byte and a consumer that deduplicates on (source, id) ingests each event once.
public enum UsageCloudEvents {
    public static let type = "io.cscgate.usage.v1"
    public static let source = "/cscgate/usage"
    /// Events read per page while exporting.
    static let page = 5_000

    /// One event, one line (no newline). Never the stored answer, never a secret.
    public static func line(_ row: StoredEvent) -> String {
        let e = row.event
        var data: [String: JSONValue] = [
            "tenant": .string(e.tenantID), "client": .string(e.clientID), "operation": .string(e.operation),
            "outcome": .string(e.outcome.rawValue), "signatures": .int(e.signatures),
            "billable_signatures": .int(e.outcome == .ok ? e.signatures : 0), "latency_us": .int(e.latencyMicros),
            "request_id": .string(e.requestID), "seq": .number(Double(row.seq)), "hash": .string(PostgresLedger.hex(row.hash)),
        ]
        for (k, v) in [("credential", e.credentialID), ("upstream", e.upstream), ("sign_algo", e.signAlgorithm),
                       ("hash_algo", e.hashAlgorithm), ("stage", e.stage), ("reason", e.reason), ("evidence", e.evidence)] {
            if let v { data[k] = .string(v) }
        }
        let event: [String: JSONValue] = [
            "specversion": .string("1.0"), "id": .string(e.id), "source": .string(source), "type": .string(type),
            "subject": .string(e.tenantID), "time": .string(rfc3339(row.timeMs)), "datacontenttype": .string("application/json"),
            "data": .object(data),
        ]
        return String(decoding: JSONValue.object(event).serialized(), as: UTF8.self)
    }

    /// `2026-01-31T23:59:59.123Z` from stored milliseconds (no formatter state, no locale).
    public static func rfc3339(_ ms: Int64) -> String {
        let day = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let rest = ms - day * 86_400_000
        let h = rest / 3_600_000, m = rest / 60_000 % 60, s = rest / 1000 % 60, milli = rest % 1000
        func pad(_ v: Int64, _ n: Int) -> String { String(repeating: "0", count: max(0, n - String(v).count)) + String(v) }
        return "\(UsageReport.dayKey(day))T\(pad(h, 2)):\(pad(m, 2)):\(pad(s, 2)).\(pad(milli, 3))Z"
    }

    /// Every event matching `query` (its limit and cursor ignored), page by page, each line
    /// handed to `emit`. Returns the number of events.
    @discardableResult
    public static func export(_ store: any LedgerStore, _ query: UsageEventQuery,
                              emit: (String) async throws -> Void) async throws -> Int {
        var q = query
        q.limit = page
        q.after = nil
        var count = 0
        while true {
            let rows = try await store.usageEvents(q)
            for r in rows { try await emit(line(r)) }
            count += rows.count
            guard rows.count == page, let last = rows.last else { return count }
            q.after = UsageCursor(last)
        }
    }
}
