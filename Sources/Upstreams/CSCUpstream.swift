import CSC
import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// A vendor's CSC RSSP (v1 or v2) reached over HTTP. Speaks the upstream's version through its
/// codec, authenticates the gateway as a service client, and turns every upstream fault into a
/// CSC error that names the upstream but not its internals.
public final class CSCUpstream: SigningBackend {
    public let name: String
    let configuration: UpstreamConfiguration
    let codec: CSCCodec
    let http: UpstreamHTTPClient
    /// Where `<method>` of this upstream's CSC version is posted: `<baseURL>/csc/<version>/<method>`.
    let service: UpstreamHTTPClient.Target
    let serviceToken: ServiceTokenSource
    let offeredMethods: MethodsCache

    static let maxResponseBytes = 4 << 20

    /// Throws when the TLS trust (`caFile`) cannot be loaded: the gateway then refuses to start.
    public init(_ configuration: UpstreamConfiguration) throws {
        self.name = configuration.name
        self.configuration = configuration
        self.codec = .of(configuration.version)
        let settings = UpstreamConnectionPool.Settings(
            connectTimeout: .milliseconds(Int64(configuration.connectTimeout * 1000)),
            maxConnections: configuration.maxConnections, maxResponseBytes: Self.maxResponseBytes)
        var urls = [configuration.baseURL]
        if case .oauth2ClientCredentials(let tokenURL, _, _) = configuration.authentication { urls.append(tokenURL) }
        self.http = try UpstreamHTTPClient(settings: settings, caFile: configuration.caFile,
                                           needsTLS: urls.contains { $0.lowercased().hasPrefix("https:") })
        self.service = try http.target("\(configuration.baseURL)/csc/\(configuration.version.rawValue)/")
        self.serviceToken = ServiceTokenSource(upstream: configuration.name)
        self.offeredMethods = MethodsCache()
    }

    public func shutdown() async {
        await http.shutdown()
    }

    // MARK: SigningBackend

    public func methods(_ context: OperationContext) async throws -> [CSCMethod] {
        try await offeredMethods.get {
            let info = try self.codec.decodeServiceInfo(try await self.call(.info, JSONObject(), context, authenticated: false))
            return info.methods
        }
    }

    public func credentialInfo(_ request: CredentialInfoRequest, _ context: OperationContext) async throws -> CredentialInfo {
        try decoding(.credentialsInfo) {
            try self.codec.decodeCredentialInfo($0)
        }(try await call(.credentialsInfo, codec.encode(request), context))
    }

    public func authorize(_ request: AuthorizeRequest, _ context: OperationContext) async throws -> AuthorizeResult {
        try decoding(.credentialsAuthorize) { try self.codec.decodeAuthorizeResult($0) }(
            try await call(.credentialsAuthorize, codec.encode(request), context))
    }

    public func extendTransaction(_ request: ExtendTransactionRequest, _ context: OperationContext) async throws -> AuthorizeResult {
        try decoding(.credentialsExtendTransaction) { try self.codec.decodeAuthorizeResult($0) }(
            try await call(.credentialsExtendTransaction, codec.encode(request), context))
    }

    public func sendChallenge(_ request: ChallengeRequest, _ context: OperationContext) async throws -> ChallengeResult {
        let answer = try await call(codec.challengeMethod, codec.encode(request), context)
        return ChallengeResult(challenge: try? answer.string("challenge"))
    }

    public func signHash(_ request: SignHashRequest, _ context: OperationContext) async throws -> SignHashResult {
        var request = request
        // v2 wants the hash algorithm whenever hashes are sent; v1 only when signAlgo leaves it open.
        if configuration.version == .v2, request.hashAlgorithm == nil {
            request.hashAlgorithm = SignatureAlgorithm.impliedHash(request.signAlgorithm)?.oid
        }
        return try decoding(.signaturesSignHash) { try self.codec.decodeSignHashResult($0) }(
            try await call(.signaturesSignHash, codec.encode(request), context))
    }

    public func timestamp(_ request: TimestampRequest, _ context: OperationContext) async throws -> TimestampResult {
        try decoding(.signaturesTimestamp) { try self.codec.decodeTimestampResult($0) }(
            try await call(.signaturesTimestamp, codec.encode(request), context))
    }

    /// A 200 whose body lacks what the method promises is the upstream's fault, not the client's.
    private func decoding<T>(_ method: CSCMethod, _ decode: @escaping (JSONObject) throws -> T) -> (JSONObject) throws -> T {
        { [name] object in
            do { return try decode(object) } catch let e as CSCError where e.status == 501 {
                throw e
            } catch {
                throw CSCError.upstreamFailed(name, "answered \(method.rawValue) without the fields it requires")
            }
        }
    }

    // MARK: HTTP

    /// One CSC call; a stale service token is renewed and the call repeated once.
    func call(_ method: CSCMethod, _ body: JSONObject, _ context: OperationContext, authenticated: Bool = true) async throws
        -> JSONObject {
        let token = authenticated ? try await serviceToken.token { try await self.obtainServiceToken(context) } : nil
        let payload = body.serialized()
        let (status, data) = try await post(method, body: payload, bearer: token, context: context)
        if status == 401, authenticated, token != nil {
            await serviceToken.invalidate()
            let fresh = try await serviceToken.token { try await self.obtainServiceToken(context) }
            let (retryStatus, retryData) = try await post(method, body: payload, bearer: fresh, context: context)
            return try interpret(method, retryStatus, retryData, context)
        }
        return try interpret(method, status, data, context)
    }

    func interpret(_ method: CSCMethod, _ status: UInt, _ data: Data, _ context: OperationContext) throws -> JSONObject {
        switch status {
        case 200..<300:
            if data.isEmpty { return JSONObject() }
            guard let o = try? JSONObject(parsing: data, lenient: true) else {
                throw CSCError.upstreamFailed(name, "answered \(method.rawValue) with a body that is not JSON")
            }
            return o
        case 400:
            if let (error, description) = CSCCodec.decodeError(data) {
                // CSC errors are meant for the client (wrong PIN, hash not covered...): pass them on.
                let text = String((description ?? "The upstream refused the request").prefix(300))
                throw CSCError(status: 400, error: String(error.prefix(64)), description: text)
            }
            context.logger.notice("upstream refused request without a CSC error body", metadata: [
                "upstream": .string(name), "method": .string(method.rawValue), "status": .stringConvertible(status),
            ])
            throw CSCError.invalidRequest("Upstream '\(name)' refused \(method.rawValue) (HTTP 400)")
        case 401, 403:
            context.logger.warning("upstream rejected the gateway's service credentials", metadata: [
                "upstream": .string(name), "status": .stringConvertible(status),
            ])
            throw CSCError.upstreamFailed(name, "rejected the gateway's service credentials")
        case 404:
            throw CSCError.upstreamFailed(name, "answered HTTP 404 to \(method.rawValue) (unknown credential or method)")
        case 429, 503:
            throw CSCError.upstreamUnavailable(name, "busy (HTTP \(status))")
        case 501:
            throw CSCError.notImplemented("Upstream '\(name)' does not implement \(method.rawValue)")
        default:
            context.logger.warning("upstream failed", metadata: [
                "upstream": .string(name), "method": .string(method.rawValue), "status": .stringConvertible(status),
            ])
            throw CSCError.upstreamFailed(name, "answered HTTP \(status) to \(method.rawValue)")
        }
    }

    private func post(_ method: CSCMethod, body: Data, bearer: String?, context: OperationContext) async throws -> (UInt, Data) {
        let target = UpstreamHTTPClient.Target(pool: service.pool, path: service.path + method.rawValue)
        return try await post(target, body: body, contentType: "application/json", bearer: bearer, context: context)
    }

    /// One POST, answered whole within the upstream's `timeout`.
    func post(_ target: UpstreamHTTPClient.Target, body: Data, contentType: String, bearer: String?,
              basic: (String, String)? = nil, context: OperationContext) async throws -> (UInt, Data) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Accept", value: "application/json")
        headers.add(name: "X-Request-ID", value: context.requestID)
        if let bearer { headers.add(name: "Authorization", value: "Bearer \(bearer)") }
        if let (user, password) = basic {
            headers.add(name: "Authorization", value: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
        }
        let deadline = NIODeadline.now() + .milliseconds(Int64(configuration.timeout * 1000))
        do {
            let response = try await http.post(target, headers: headers, body: ByteBuffer(bytes: body), deadline: deadline)
            return (response.status, Data(response.body.readableBytesView))
        } catch {
            throw translate(error, context)
        }
    }

    /// Transport faults as the client should see them; the detail goes to the log only.
    func translate(_ error: any Error, _ context: OperationContext) -> CSCError {
        context.logger.warning("upstream transport failure", metadata: [
            "upstream": .string(name), "error": .string(String(describing: error).prefix(200).description),
        ])
        switch error as? UpstreamHTTPError {
        case .deadlineExceeded: return .upstreamTimeout(name, seconds: configuration.timeout)
        case .connectTimeout: return .upstreamUnavailable(name, "connection timed out")
        case .connectionRefused: return .upstreamUnavailable(name, "connection refused")
        case .closed: return .upstreamFailed(name, "closed the connection")
        case .responseTooLarge(let limit): return .upstreamFailed(name, "sent a response larger than \(limit) bytes")
        case .malformedResponse: return .upstreamFailed(name, "sent a malformed HTTP response")
        case .shutDown: return .upstreamUnavailable(name, "the gateway is shutting down")
        case .connectFailed, nil:
            if error is NIOSSLError || error is BoringSSLError { return .upstreamUnavailable(name, "TLS handshake failed") }
            return .upstreamUnavailable(name, "transport error")
        }
    }

    // MARK: Service authentication

    func obtainServiceToken(_ context: OperationContext) async throws -> (token: String, expiresIn: Int)? {
        switch configuration.authentication {
        case .none:
            return nil
        case .basic(let user, let passwordReference):
            let password = try resolveSecret(passwordReference)
            let target = UpstreamHTTPClient.Target(pool: service.pool, path: service.path + CSCMethod.authLogin.rawValue)
            let (status, data) = try await post(target, body: Data("{}".utf8), contentType: "application/json", bearer: nil,
                                                basic: (user, password), context: context)
            return try tokenAnswer(status, data)
        case .oauth2ClientCredentials(let url, let clientID, let secretReference):
            let secret = try resolveSecret(secretReference)
            let target: UpstreamHTTPClient.Target
            do { target = try http.target(url) } catch {
                throw CSCError.upstreamFailed(name, "has an unusable tokenURL (\(error))")
            }
            let (status, data) = try await post(target, body: Data("grant_type=client_credentials".utf8),
                                                contentType: "application/x-www-form-urlencoded", bearer: nil,
                                                basic: (clientID, secret), context: context)
            return try tokenAnswer(status, data)
        }
    }

    private func resolveSecret(_ reference: SecretReference) throws -> String {
        do { return try reference.resolve() } catch {
            throw CSCError.upstreamFailed(name, "service credentials are not available to the gateway (\(reference))")
        }
    }

    private func tokenAnswer(_ status: UInt, _ data: Data) throws -> (token: String, expiresIn: Int)? {
        guard (200..<300).contains(status), let o = try? JSONObject(parsing: data, lenient: true),
              let t = try? codec.decodeTokenResult(o) else {
            throw CSCError.upstreamFailed(name, "refused the gateway's service login (HTTP \(status))")
        }
        return (t.accessToken, t.expiresIn)
    }
}

/// The gateway's own token at one upstream: fetched once, shared, renewed before it expires.
actor ServiceTokenSource {
    let upstream: String
    private var current: (token: String, renewAt: Date)?
    private var pending: Task<(token: String, expiresIn: Int)?, Error>?
    private var noneNeeded = false

    init(upstream: String) { self.upstream = upstream }

    func token(_ obtain: @escaping @Sendable () async throws -> (token: String, expiresIn: Int)?) async throws -> String? {
        if noneNeeded { return nil }
        if let c = current, c.renewAt > Date() { return c.token }
        if let p = pending { return try await p.value?.token }
        let task = Task { try await obtain() }
        pending = task
        defer { pending = nil }
        guard let fresh = try await task.value else {
            noneNeeded = true
            return nil
        }
        // Renew at 80 % of the lifetime, so a token never expires between check and use.
        current = (fresh.token, Date().addingTimeInterval(Double(fresh.expiresIn) * 0.8))
        return fresh.token
    }

    func invalidate() { current = nil }
}

/// The upstream's `info.methods`, asked once and kept for a while.
actor MethodsCache {
    private var value: (methods: [CSCMethod], fetched: Date)?
    private let ttl: TimeInterval = 300

    func get(_ fetch: @Sendable () async throws -> [CSCMethod]) async throws -> [CSCMethod] {
        if let v = value, Date().timeIntervalSince(v.fetched) < ttl { return v.methods }
        let methods = try await fetch()
        value = (methods, Date())
        return methods
    }
}
