import CSC
import Crypto
import Foundation
import GatewayCore
import Ledger

/// Usage over HTTP, for two kinds of reader with one set of handlers:
/// - operators, under `/admin/v1/` (admin authentication, every tenant);
/// - a tenant's client apps, under `/tenant/v1/` with their CSC access token (their own tenant,
///   and a reseller's sub-tenants).
/// What a reader may see is decided by `UsageScope` alone; the handlers only parse, ask the
/// ledger and encode.
public struct UsageAPI: Sendable {
    public static let tenantPrefix = "/tenant/v1/"

    let store: any LedgerStore
    let gateway: Gateway
    /// Verifies checkpoint signatures in HTML reports; nil leaves them unchecked (and says so).
    let publicKey: Curve25519.Signing.PublicKey?

    public init(store: any LedgerStore, gateway: Gateway, publicKey: Curve25519.Signing.PublicKey?) {
        self.store = store
        self.gateway = gateway
        self.publicKey = publicKey
    }

    /// Adds `usage`, `usage/export` and `reports` to the admin API.
    public func register(on admin: inout AdminAPI) {
        for resource in Resource.allCases {
            admin.add(.get, resource.rawValue) { request in
                await self.answer(resource, query: request.query, context: request.context) { tenants, known in
                    UsageScope(reader: .operator(request.operatorID), tenants: tenants, known: known)
                }
            }
        }
    }

    enum Resource: String, CaseIterable {
        case usage, export = "usage/export", reports
    }

    /// A call under `/tenant/v1/`, authenticated with the client's access token.
    func handleTenant(method: String, path: String, query: [String: String], authorization: String?,
                      context: OperationContext) async -> FrontDoorResponse {
        let caller: Caller
        do {
            guard let token = try FrontDoor(gateway: gateway).bearer(authorization) else {
                throw CSCError(status: 401, error: "invalid_token",
                               description: "Missing access token: send Authorization: Bearer <token>",
                               headers: ["WWW-Authenticate": "Bearer"])
            }
            caller = try await gateway.authenticate(accessToken: token, logger: context.logger)
        } catch let error as CSCError {
            return FrontDoorResponse(error)
        } catch {
            return FrontDoorResponse(.serverError(requestID: context.requestID))
        }
        guard let resource = Resource(rawValue: path) else {
            return FrontDoorResponse(CSCError(status: 404, error: "invalid_request",
                                              description: "No resource \(Self.tenantPrefix)\(UsageScope.printable(path))"))
        }
        guard method == "GET" else {
            return FrontDoorResponse(CSCError(status: 405, error: "invalid_request",
                                              description: "\(Self.tenantPrefix)\(path) accepts GET", headers: ["Allow": "GET"]))
        }
        var logger = context.logger
        logger[metadataKey: "tenant"] = .string(caller.tenantID)
        logger[metadataKey: "client"] = .string(caller.clientID)
        let context = OperationContext(requestID: context.requestID, requestIDFromClient: context.requestIDFromClient,
                                       logger: logger)
        context.logger.info("tenant usage call", metadata: ["resource": .string(path)])
        return await answer(resource, query: query, context: context) { tenants, _ in
            UsageScope(reader: .tenant(caller.tenantID), tenants: tenants)
        }
    }

    private func answer(_ resource: Resource, query: [String: String], context: OperationContext,
                        scope makeScope: @Sendable ([TenantConfiguration], Set<String>) -> UsageScope) async -> FrontDoorResponse {
        do {
            let p = try UsageParameters(query, for: resource)
            let configured = Array(gateway.directory.tenants.values)
            var known = Set<String>()
            // A tenant that has left the configuration keeps its ledger history for operators.
            if let t = p.tenant, gateway.directory.tenants[t] == nil,
               try await store.usageEvents(UsageEventQuery(tenants: [t], limit: 1)).isEmpty == false {
                known.insert(t)
            }
            let scope = makeScope(configured, known)
            switch resource {
            case .usage, .export:
                // An operator naming no tenant lists every tenant; anyone else gets the scope's answer.
                let everyTenant = scope.isOperator && p.tenant == nil && !p.includeSubtenants
                let tenants = everyTenant ? nil : try scope.tenants(named: p.tenant, includeSubtenants: p.includeSubtenants)
                let q = UsageEventQuery(tenants: tenants, from: p.from, to: p.to, outcome: p.outcome, after: p.cursor,
                                        limit: p.limit)
                return resource == .usage ? try await listing(q) : try await export(q)
            case .reports:
                let tenants = try scope.tenants(named: p.tenant, includeSubtenants: p.includeSubtenants)
                guard let from = p.from, let to = p.to else {
                    throw CSCError.invalidRequest("Missing parameter \(p.from == nil ? "from" : "to")")
                }
                let plans = gateway.directory.tenants.compactMapValues(\.plan)
                let statement = try await UsageStatement.make(store, tenants: tenants, plans: plans, from: from, to: to,
                                                              grouping: p.grouping)
                switch p.format {
                case "csv": return FrontDoorResponse(body: Data(statement.csv.utf8), contentType: "text/csv; charset=utf-8")
                case "html":
                    let page = try await CompliancePage.make(store, statement: statement, publicKey: publicKey)
                    return FrontDoorResponse(body: Data(page.utf8), contentType: "text/html; charset=utf-8")
                default: return FrontDoorResponse(body: statement.json, contentType: "application/json")
                }
            }
        } catch let error as CSCError {
            return FrontDoorResponse(error)
        } catch {
            // The ledger could not be read: say so without its internals.
            context.logger.error("usage query failed", metadata: ["error_type": .string(String(describing: type(of: error)))])
            return FrontDoorResponse(CSCError(status: 503, error: "temporarily_unavailable",
                                              description: "The usage ledger cannot be read right now; retry later",
                                              headers: ["Retry-After": "5"]))
        }
    }

    private func listing(_ q: UsageEventQuery) async throws -> FrontDoorResponse {
        // One more than asked tells whether there is a next page.
        var probe = q
        probe.limit = q.limit + 1
        let rows = try await store.usageEvents(probe)
        let page = Array(rows.prefix(q.limit))
        var object: [String: JSONValue] = ["events": .array(page.map(Self.eventJSON))]
        if rows.count > q.limit, let last = page.last { object["next_cursor"] = .string(UsageCursor(last).token) }
        return FrontDoorResponse(json: JSONObject(object))
    }

    private func export(_ q: UsageEventQuery) async throws -> FrontDoorResponse {
        var out = Data()
        try await UsageCloudEvents.export(store, q) { line in
            out.append(contentsOf: line.utf8)
            out.append(0x0A)
        }
        return FrontDoorResponse(body: out, contentType: "application/x-ndjson")
    }

    /// An event as the listing shows it: everything billed and audited, never the stored answer.
    static func eventJSON(_ row: StoredEvent) -> JSONValue {
        let e = row.event
        var o: [String: JSONValue] = [
            "id": .string(e.id), "seq": .number(Double(row.seq)), "time": .string(UsageCloudEvents.rfc3339(row.timeMs)),
            "tenant": .string(e.tenantID), "client": .string(e.clientID), "operation": .string(e.operation),
            "signatures": .int(e.signatures), "outcome": .string(e.outcome.rawValue), "latency_us": .int(e.latencyMicros),
            "request_id": .string(e.requestID),
        ]
        for (k, v) in [("credential", e.credentialID), ("upstream", e.upstream), ("sign_algo", e.signAlgorithm),
                       ("hash_algo", e.hashAlgorithm), ("stage", e.stage), ("reason", e.reason), ("evidence", e.evidence)] {
            if let v { o[k] = .string(v) }
        }
        return .object(o)
    }
}

/// Query parameters of the usage resources, checked once; every mistake is a 400 that names it.
struct UsageParameters {
    var tenant: String?
    var includeSubtenants = false
    var from: Date?
    var to: Date?
    var outcome: UsageOutcome?
    var cursor: UsageCursor?
    var limit = 100
    var grouping = UsageReport.Grouping.day
    var format = "json"

    static let maxLimit = 1000

    init(_ q: [String: String], for resource: UsageAPI.Resource) throws(CSCError) {
        let allowed: Set<String> = switch resource {
        case .usage: ["tenant", "include_subtenants", "from", "to", "outcome", "limit", "cursor"]
        case .export: ["tenant", "include_subtenants", "from", "to", "outcome"]
        case .reports: ["tenant", "include_subtenants", "from", "to", "group_by", "format"]
        }
        if let unknown = q.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw .invalidRequest("Unknown parameter '\(UsageScope.printable(unknown))'; accepted: \(allowed.sorted().joined(separator: ", "))")
        }
        if let t = q["tenant"] {
            guard !t.isEmpty else { throw .invalidRequest("Invalid parameter tenant: empty") }
            tenant = t
        }
        if let s = q["include_subtenants"] {
            guard let b = ["true": true, "false": false, "1": true, "0": false][s] else {
                throw .invalidRequest("Invalid parameter include_subtenants: true or false")
            }
            includeSubtenants = b
        }
        for (name, value) in [("from", q["from"]), ("to", q["to"])] {
            guard let value else { continue }
            guard let d = UsageReport.parseDate(value) else {
                throw .invalidRequest("Invalid parameter \(name): expected YYYY-MM-DD or an ISO 8601 time such as 2026-01-31T12:00:00Z")
            }
            if name == "from" { from = d } else { to = d }
        }
        if let from, let to, from >= to { throw .invalidRequest("Invalid parameters: from must be before to") }
        if let o = q["outcome"] {
            guard let v = UsageOutcome(rawValue: o) else { throw .invalidRequest("Invalid parameter outcome: ok, denied or failed") }
            outcome = v
        }
        if let c = q["cursor"] {
            guard let v = UsageCursor(token: c) else { throw .invalidRequest("Invalid parameter cursor: use next_cursor as given") }
            cursor = v
        }
        if let l = q["limit"] {
            guard let v = Int(l), (1...Self.maxLimit).contains(v) else {
                throw .invalidRequest("Invalid parameter limit: an integer from 1 to \(Self.maxLimit)")
            }
            limit = v
        }
        if let g = q["group_by"] {
            guard let v = UsageReport.Grouping(rawValue: g) else {
                throw .invalidRequest("Invalid parameter group_by: one of \(UsageReport.Grouping.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            grouping = v
        }
        if let f = q["format"] {
            guard ["json", "csv", "html"].contains(f) else { throw .invalidRequest("Invalid parameter format: json, csv or html") }
            format = f
        }
    }
}
