import CSC
import Foundation
import GatewayCore
import Logging

/// An HTTP answer before it meets the server framework.
public struct FrontDoorResponse: Sendable {
    public var status: Int
    public var body: Data?
    public var headers: [String: String]

    public init(status: Int = 200, body: Data, contentType: String) {
        self.status = status
        self.body = body
        self.headers = ["Content-Type": contentType]
    }

    public init(status: Int = 200, json: JSONObject? = nil, headers: [String: String] = [:]) {
        self.status = status
        self.body = json?.serialized()
        self.headers = headers
    }

    public init(_ error: CSCError) {
        self.status = error.status
        self.body = error.body.serialized()
        self.headers = error.headers
    }
}

/// The CSC front door: decode in the client's version, authenticate, call the gateway, encode.
/// It holds no signing logic; every decision lives in `Gateway`.
public struct FrontDoor: Sendable {
    let gateway: Gateway

    public init(gateway: Gateway) { self.gateway = gateway }

    /// Methods a CSC client may name that cscgate deliberately does not offer (yet): 501, not 404.
    static let notOffered: Set<String> = [
        "credentials/authorizeCheck", "signatures/signDoc", "signatures/signPolling", "oauth2/authorize",
        "oauth2/pushed_authorize",
    ]

    public func handle(version: CSCVersion, path: String, authorization: String?, body: Data,
                       context: OperationContext) async -> FrontDoorResponse {
        do {
            return try await dispatch(version: version, path: path, authorization: authorization, body: body, context: context)
        } catch let error as CSCError {
            return FrontDoorResponse(error)
        } catch {
            context.logger.error("unexpected failure", metadata: ["error_type": .string(String(describing: type(of: error)))])
            return FrontDoorResponse(.serverError(requestID: context.requestID))
        }
    }

    private func dispatch(version: CSCVersion, path: String, authorization: String?, body: Data,
                          context: OperationContext) async throws -> FrontDoorResponse {
        let codec = CSCCodec.of(version)
        guard let method = CSCMethod(rawValue: path), codec.methodNames([method]).first == path else {
            if Self.notOffered.contains(path) { throw CSCError.notImplemented("\(path) is not offered by this gateway") }
            if path == "credentials/getChallenge" || path == "credentials/sendOTP" {
                throw CSCError.invalidRequest("\(path) is not part of CSC \(version.rawValue); use \(codec.challengeMethod.rawValue)")
            }
            throw CSCError.unknownMethod(path)
        }
        let object = try JSONObject(parsing: body)

        switch method {
        case .info:
            // info needs no token; with one, it describes what that tenant can use.
            var caller: Caller?
            if let token = try? bearer(authorization) { caller = try? await gateway.authenticate(accessToken: token, logger: context.logger) }
            _ = try codec.decodeInfoRequest(object)
            return ok(codec.encode(await gateway.info(for: caller, context)))
        case .authLogin:
            let request = try codec.decodeLoginRequest(object)
            let result = try await gateway.login(request, basic: try basicCredentials(authorization), logger: context.logger)
            return ok(codec.encode(result))
        default:
            break
        }

        let caller = try await authenticate(authorization, context.logger)
        var logger = context.logger
        logger[metadataKey: "tenant"] = .string(caller.tenantID)
        logger[metadataKey: "client"] = .string(caller.clientID)
        var context = context
        context.logger = logger

        // Decoding happens inside `perform`, so a malformed request is a recorded denial too.
        switch method {
        case .authRevoke:
            try await gateway.perform(method, caller, context) { _ in
                try await gateway.revoke(try codec.decodeRevokeRequest(object), by: caller.clientID, logger: context.logger)
            }
            return FrontDoorResponse(status: 204)
        case .credentialsList:
            return ok(codec.encode(try await gateway.perform(method, caller, context) { note in
                try await gateway.listCredentials(caller, try codec.decodeListRequest(object), context, note)
            }))
        case .credentialsInfo:
            return ok(codec.encode(try await gateway.perform(method, caller, context) { note in
                try await gateway.credentialInfo(caller, try codec.decodeCredentialInfoRequest(object), context, note)
            }))
        case .credentialsAuthorize:
            return ok(codec.encode(try await gateway.perform(method, caller, context) { note in
                try await gateway.authorize(caller, try codec.decodeAuthorizeRequest(object), context, note)
            }))
        case .credentialsExtendTransaction:
            return ok(codec.encode(try await gateway.perform(method, caller, context) { note in
                try await gateway.extendTransaction(caller, try codec.decodeExtendRequest(object), context, note)
            }))
        case .credentialsSendOTP, .credentialsGetChallenge:
            let result = try await gateway.perform(method, caller, context) { note in
                try await gateway.sendChallenge(caller, try codec.decodeChallengeRequest(object), context, note)
            }
            guard let challenge = result.challenge, version == .v2 else { return FrontDoorResponse(status: 204) }
            return ok(JSONObject(["challenge": .string(challenge)]))
        case .signaturesSignHash:
            return ok(codec.encode(try await gateway.perform(method, caller, context) { note in
                try await gateway.signHash(caller, try codec.decodeSignHashRequest(object), context, note)
            }))
        case .signaturesTimestamp:
            return ok(codec.encode(try await gateway.perform(method, caller, context) { note in
                try await gateway.timestamp(caller, try codec.decodeTimestampRequest(object), context, note)
            }))
        case .info, .authLogin, .credentialsAuthorizeCheck, .signaturesSignDoc, .signaturesSignPolling:
            throw CSCError.notImplemented("\(path) is not offered by this gateway")
        }
    }

    private func ok(_ o: JSONObject) -> FrontDoorResponse { FrontDoorResponse(json: o) }

    func authenticate(_ authorization: String?, _ logger: Logger) async throws -> Caller {
        guard let token = try bearer(authorization) else {
            throw CSCError(status: 401, error: "invalid_token", description: "Missing access token: send Authorization: Bearer <token>",
                           headers: ["WWW-Authenticate": "Bearer"])
        }
        let caller = try await gateway.authenticate(accessToken: token, logger: logger)
        guard caller.scopes.contains("service") else { throw CSCError.insufficientScope("The token lacks scope 'service'") }
        return caller
    }

    /// The CSC tables say a header not shaped like `Bearer <token>` is 400, a bad token 401.
    /// Read on bytes: every request passes here, and Foundation's Unicode-aware trimming and
    /// lowercasing cost more than the token lookup itself.
    func bearer(_ authorization: String?) throws -> String? {
        guard let authorization else { return nil }
        let bytes = Array(authorization.utf8)
        func isBlank(_ b: UInt8) -> Bool { b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") }
        var start = 0
        while start < bytes.count, bytes[start] == UInt8(ascii: " ") { start += 1 }
        let scheme = Array("bearer".utf8)
        var end = bytes.count
        while end > start, isBlank(bytes[end - 1]) { end -= 1 }
        var tokenStart = start + scheme.count
        guard tokenStart < end, bytes[tokenStart] == UInt8(ascii: " "),
              zip(bytes[start..<tokenStart], scheme).allSatisfy({ $0 | 0x20 == $1 }) else {
            throw CSCError.invalidRequest("Malformed Authorization header: expected 'Bearer <token>'")
        }
        while tokenStart < end, isBlank(bytes[tokenStart]) { tokenStart += 1 }
        guard tokenStart < end else {
            throw CSCError.invalidRequest("Malformed Authorization header: expected 'Bearer <token>'")
        }
        return String(decoding: bytes[tokenStart..<end], as: UTF8.self)
    }

    /// HTTP Basic credentials. OAuth clients percent-encode id and secret inside Basic
    /// (RFC 6749 §2.3.1); plain Basic (RFC 7617, used by auth/login) takes them literally.
    func basicCredentials(_ authorization: String?, percentEncoded: Bool = false) throws -> (id: String, secret: String)? {
        guard let authorization else { return nil }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic", let decoded = Data(base64Encoded: String(parts[1])),
              let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":") else {
            throw CSCError(status: 401, error: "invalid_request", description: "Malformed Authorization header: expected 'Basic <base64(id:secret)>'",
                           headers: ["WWW-Authenticate": "Basic realm=\"cscgate\""])
        }
        let id = String(text[..<colon]), secret = String(text[text.index(after: colon)...])
        guard percentEncoded else { return (id, secret) }
        return (id.removingPercentEncoding ?? id, secret.removingPercentEncoding ?? secret)
    }
}
