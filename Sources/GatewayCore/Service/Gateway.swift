import CSC
import Foundation
import Logging
import Synchronization

/// The gateway's CSC operations on the version-neutral model. The HTTP layer decodes, calls
/// one of these with an authenticated `Caller`, and encodes; it holds no logic of its own.
public final class Gateway: Sendable {
    public let configuration: GatewayConfiguration
    /// Tenants and policies, swapped whole on reload; a request reads the one it started with.
    let snapshotBox: Mutex<GatewaySnapshot>
    let backends: [String: any SigningBackend]
    public let tokens: any SessionTokens
    let seal: SADSeal
    let usage: any SADBudgets
    let catalog: CredentialCatalog
    let ledger: (any UsageLedger)?
    public let limits: Limits
    let certificates = CertificateFactsCache()
    /// Signer-certificate checks (OCSP); nil when `ocsp.enabled` is off.
    let revocation: (any RevocationChecker)?
    let now: @Sendable () -> Date
    /// Operations under way, for the ledger's group commit (see `OperationsInFlight`).
    public let inFlight: OperationsInFlight

    public init(configuration: LoadedConfiguration, backends: [String: any SigningBackend], seal: SADSeal,
                ledger: (any UsageLedger)? = nil, limits: Limits = Limits(), revocation: (any RevocationChecker)? = nil,
                sessions: (tokens: any SessionTokens, budgets: any SADBudgets)? = nil,
                inFlight: OperationsInFlight = OperationsInFlight(),
                now: @escaping @Sendable () -> Date = Date.init) {
        self.configuration = configuration.gateway
        self.snapshotBox = Mutex(GatewaySnapshot(configuration))
        self.limits = limits
        self.backends = backends
        self.tokens = sessions?.tokens ?? TokenStore(accessLifetime: configuration.gateway.tokens.accessTokenLifetime,
                                                     refreshLifetime: configuration.gateway.tokens.refreshTokenLifetime, now: now)
        self.seal = seal
        self.usage = sessions?.budgets ?? SADUsage(now: now)
        self.catalog = CredentialCatalog(ttlByUpstream: Dictionary(
            configuration.gateway.upstreams.map { ($0.name, $0.credentialInfoTTL) }, uniquingKeysWith: { a, _ in a }))
        self.ledger = ledger
        self.revocation = revocation
        self.inFlight = inFlight
        self.now = now
    }

    public var snapshot: GatewaySnapshot { snapshotBox.withLock { $0 } }
    public var directory: TenantDirectory { snapshot.directory }

    /// Swaps in new tenants and policies; requests in flight finish with what they started with.
    public func replace(_ loaded: LoadedConfiguration) {
        let next = GatewaySnapshot(loaded)
        snapshotBox.withLock { $0 = next }
    }

    /// Swaps in a new set of tenants under the current policy files.
    public func replaceTenants(_ tenants: [TenantConfiguration]) {
        let documents = Array(snapshot.policies.documents.values)
        let next = GatewaySnapshot(LoadedConfiguration(gateway: configuration, tenants: tenants, policies: documents))
        snapshotBox.withLock { $0 = next }
    }

    func backend(_ name: String) throws(CSCError) -> any SigningBackend {
        guard let b = backends[name] else { throw .upstreamUnavailable(name, "not configured") }
        return b
    }

    /// Resolves a tenant's credential to its route, backend and (cached) upstream description.
    func resolve(_ caller: Caller, _ credentialID: String, _ context: OperationContext, _ note: UsageNote? = nil) async throws
        -> (CredentialRoute, any SigningBackend, UpstreamCredential) {
        note?.stage("credential")
        let route = try directory.route(tenant: caller.tenantID, credentialID: credentialID)
        note?.credential(route)
        let backend = try backend(route.upstream)
        let credential = try await catalog.credential(route, backend: backend, context)
        return (route, backend, credential)
    }

    var unixNow: Int { Int(now().timeIntervalSince1970) }
}

/// The tenant and policy state one request works with: immutable, built off the request path.
public struct GatewaySnapshot: Sendable {
    public let directory: TenantDirectory
    public let policies: PolicyIndex
    public let loadedAt: Date

    public init(_ loaded: LoadedConfiguration) {
        directory = TenantDirectory(loaded.tenants)
        policies = PolicyIndex(documents: loaded.policies, tenants: loaded.tenants)
        loadedAt = Date()
    }
}

// MARK: - Authentication

extension Gateway {
    /// Checks a client id and secret. The same error for an unknown client and a wrong secret,
    /// so the answer does not reveal which client ids exist.
    public func authenticateClient(id: String, secret: String, failure: CSCError) throws(CSCError) -> TenantDirectory.ClientEntry {
        guard let entry = directory.client(id) else {
            // Spend about the same time as a real check.
            _ = Self.decoyHash.verify(secret)
            throw failure
        }
        guard entry.client.secretHash.verify(secret) else { throw failure }
        return entry
    }

    private static let decoyHash: SecretHash = {
        (try? SecretHash.make(secret: "decoy")) ?? SecretHash(encoded: "$scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")!
    }()

    /// `auth/login`: Basic client credentials, or a refresh token in the body.
    public func login(_ request: LoginRequest, basic: (id: String, secret: String)?, logger: Logger) async throws -> TokenResult {
        if let refresh = request.refreshToken {
            guard basic == nil else {
                throw CSCError.invalidRequest("Send either an Authorization header or refresh_token, not both")
            }
            do { return try await tokens.refresh(refresh, clientID: nil, logger: logger) } catch let e as CSCError where e.status == 503 {
                throw e
            } catch {
                throw CSCError.authenticationError("The refresh token is not valid")
            }
        }
        guard let basic else {
            throw CSCError(status: 401, error: "invalid_request", description: "Missing HTTP Basic authorization",
                           headers: ["WWW-Authenticate": "Basic realm=\"cscgate\""])
        }
        let entry = try authenticateClient(id: basic.id, secret: basic.secret, failure: .authenticationError())
        return try await tokens.issue(tenantID: entry.tenantID, clientID: entry.client.id, scopes: entry.client.scopes,
                                      withRefreshToken: request.rememberMe, logger: logger)
    }

    /// `oauth2/token` grants; the client is already authenticated by the caller of this method.
    public func token(grantType: String, client: TenantDirectory.ClientEntry, refreshToken: String?, logger: Logger) async throws -> TokenResult {
        switch grantType {
        case "client_credentials":
            return try await tokens.issue(tenantID: client.tenantID, clientID: client.client.id, scopes: client.client.scopes,
                                          withRefreshToken: false, logger: logger)
        case "refresh_token":
            guard let refreshToken, !refreshToken.isEmpty else {
                throw CSCError.invalidRequest("Missing parameter refresh_token")
            }
            return try await tokens.refresh(refreshToken, clientID: client.client.id, logger: logger)
        case "authorization_code":
            throw CSCError.unsupportedGrantType("grant_type authorization_code is not offered; use client_credentials")
        default:
            throw CSCError.unsupportedGrantType("Unsupported grant_type '\(grantType.prefix(40))'")
        }
    }

    public func authenticate(accessToken: String, logger: Logger) async throws(CSCError) -> Caller {
        let caller = try await tokens.authenticate(accessToken: accessToken, logger: logger)
        // A client removed from configuration loses access at once, whatever tokens it holds.
        guard directory.client(caller.clientID)?.tenantID == caller.tenantID else { throw .invalidToken() }
        return caller
    }

    public func revoke(_ request: RevokeRequest, by clientID: String, logger: Logger) async throws(CSCError) {
        try await tokens.revoke(request.token, clientID: clientID, logger: logger)
    }
}
