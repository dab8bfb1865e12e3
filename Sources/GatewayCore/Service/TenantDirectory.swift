import CSC

/// The tenants, their clients and their credential routes, indexed for the request path.
/// Immutable: a reload builds a new one and swaps it in whole.
public struct TenantDirectory: Sendable {
    public struct ClientEntry: Sendable {
        public let tenantID: String
        public let client: ClientConfiguration
    }

    public let tenants: [String: TenantConfiguration]
    private let clients: [String: ClientEntry]
    private let routes: [String: [String: CredentialRoute]]

    public init(_ tenants: [TenantConfiguration]) {
        var byID = [String: TenantConfiguration](), clients = [String: ClientEntry]()
        var routes = [String: [String: CredentialRoute]]()
        for t in tenants {
            byID[t.id] = t
            for c in t.clients { clients[c.id] = ClientEntry(tenantID: t.id, client: c) }
            routes[t.id] = Dictionary(t.credentials.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        }
        self.tenants = byID
        self.clients = clients
        self.routes = routes
    }

    public func client(_ id: String) -> ClientEntry? { clients[id] }

    /// Lookups are always keyed by tenant: another tenant's credential id is simply unknown.
    public func route(tenant: String, credentialID: String) throws(CSCError) -> CredentialRoute {
        guard let r = routes[tenant]?[credentialID] else { throw .invalidRequest("Invalid parameter credentialID") }
        return r
    }

    public func credentials(of tenant: String) -> [CredentialRoute] { tenants[tenant]?.credentials ?? [] }
}
