import Foundation

/// Translates between the CSC wire format of one version and the version-neutral model.
///
/// Each request and result type goes both ways: the front door decodes requests and encodes
/// results in the client's version; an upstream connector encodes requests and decodes results
/// in the upstream's version. Results from upstreams are read leniently (numbers as strings).
public struct CSCCodec: Sendable {
    public let version: CSCVersion

    public static let v1 = CSCCodec(version: .v1)
    public static let v2 = CSCCodec(version: .v2)
    public static func of(_ v: CSCVersion) -> CSCCodec { v == .v1 ? .v1 : .v2 }

    /// Field names that differ between the versions.
    var hashesKey: String { version == .v1 ? "hash" : "hashes" }
    var hashAlgoKey: String { version == .v1 ? "hashAlgo" : "hashAlgorithmOID" }

    /// Names that belong to the other version: a client that sends one learns what to send instead.
    private var otherVersionNames: [String: String] {
        version == .v1
            ? ["hashes": "hash", "hashAlgorithmOID": "hashAlgo", "authData": "PIN/OTP"]
            : ["hash": "hashes", "hashAlgo": "hashAlgorithmOID", "PIN": "authData", "OTP": "authData",
               "maxResults": "(nothing: v2 has no paging)", "pageToken": "(nothing: v2 has no paging)"]
    }

    /// The EUDI Swift client sends these snake_case names on v2; they are accepted as aliases.
    private static let v2Aliases = [
        "sign_algo_params": "signAlgoParams", "client_data": "clientData", "user_id": "userID",
        "auth_info": "authInfo", "only_valid": "onlyValid",
    ]

    private func normalised(_ o: JSONObject, allowed: Set<String>) throws -> JSONObject {
        var o = o
        if version == .v2 {
            for (alias, name) in Self.v2Aliases where o.has(alias) && !o.has(name) {
                o[name] = o[alias]
                o[alias] = nil
            }
        }
        for key in o.fields.keys where !allowed.contains(key) {
            if let replacement = otherVersionNames[key] {
                throw CSCError.invalidRequest("Parameter \(key) is not part of CSC \(version.rawValue); send \(replacement)")
            }
        }
        return o
    }

    // MARK: info

    public func decodeInfoRequest(_ o: JSONObject) throws -> InfoRequest {
        InfoRequest(lang: try o.string("lang"))
    }

    public func encode(_ r: InfoRequest) -> JSONObject {
        var o = JSONObject()
        if let lang = r.lang { o["lang"] = .string(lang) }
        return o
    }

    public func encode(_ info: ServiceInfo) -> JSONObject {
        var o = JSONObject([
            "specs": .string(version == .v1 ? "1.0.4.0" : "2.0.0.2"),
            "name": .string(info.name), "logo": .string(info.logo), "region": .string(info.region),
            "lang": .string(info.lang), "description": .string(info.description),
            "authType": .strings(info.authTypes),
            "methods": .strings(methodNames(info.methods)),
        ])
        if let oauth2 = info.oauth2 { o["oauth2"] = .string(oauth2) }
        if version == .v2 {
            o["signAlgorithms"] = .object(["algos": .strings(info.signAlgorithms)])
            o["signature_formats"] = .object(["formats": .strings([])])
            o["conformance_levels"] = .strings([])
        }
        return o
    }

    public func decodeServiceInfo(_ o: JSONObject) throws -> ServiceInfo {
        let names = try o.stringArray("methods") ?? []
        var methods = [CSCMethod]()
        for name in names {
            // getChallenge is the v2 spelling of sendOTP; the model keeps one name.
            let m = name == CSCMethod.credentialsGetChallenge.rawValue ? CSCMethod.credentialsSendOTP : CSCMethod(rawValue: name)
            if let m, !methods.contains(m) { methods.append(m) }
        }
        var algos = [String]()
        if let sa = try? o.object("signAlgorithms") { algos = (try? sa.stringArray("algos")) ?? [] }
        return ServiceInfo(
            specs: (try? o.string("specs")) ?? "",
            name: (try? o.string("name")) ?? "", logo: (try? o.string("logo")) ?? "",
            region: (try? o.string("region")) ?? "", lang: (try? o.string("lang")) ?? "",
            description: (try? o.string("description")) ?? "",
            authTypes: (try? o.stringArray("authType")) ?? [], oauth2: try? o.string("oauth2"),
            methods: methods, signAlgorithms: algos)
    }

    /// Method names as this version spells them.
    public func methodNames(_ methods: [CSCMethod]) -> [String] {
        methods.compactMap { m in
            switch (version, m) {
            case (.v2, .credentialsSendOTP): CSCMethod.credentialsGetChallenge.rawValue
            case (.v1, .credentialsGetChallenge), (.v1, .credentialsAuthorizeCheck), (.v1, .signaturesSignDoc),
                 (.v1, .signaturesSignPolling): nil
            default: m.rawValue
            }
        }
    }

    // MARK: auth/login, auth/revoke

    public func decodeLoginRequest(_ o: JSONObject) throws -> LoginRequest {
        // The v1 sample spells it refreshToken while the table says refresh_token: accept both.
        let refresh = try o.string("refresh_token") ?? o.string("refreshToken")
        return LoginRequest(refreshToken: refresh, rememberMe: try o.bool("rememberMe") ?? false,
                            clientData: try o.string("clientData"))
    }

    public func encode(_ t: TokenResult) -> JSONObject {
        var o = JSONObject(["access_token": .string(t.accessToken), "expires_in": .int(t.expiresIn)])
        if let r = t.refreshToken { o["refresh_token"] = .string(r) }
        return o
    }

    public func decodeTokenResult(_ o: JSONObject) throws -> TokenResult {
        TokenResult(accessToken: try o.requiredString("access_token"), refreshToken: try o.string("refresh_token"),
                    expiresIn: try o.int("expires_in") ?? 3600)
    }

    public func decodeRevokeRequest(_ o: JSONObject) throws -> RevokeRequest {
        let hint = try o.string("token_type_hint")
        if let hint, hint != "access_token", hint != "refresh_token" {
            throw CSCError.invalidRequest("Invalid parameter token_type_hint")
        }
        return RevokeRequest(token: try o.requiredString("token"), tokenTypeHint: hint)
    }

    // MARK: credentials/list

    public func decodeListRequest(_ o: JSONObject) throws -> CredentialListRequest {
        let o = try normalised(o, allowed: version == .v1
            ? ["userID", "maxResults", "pageToken", "lang", "clientData"]
            : ["userID", "credentialInfo", "certificates", "certInfo", "authInfo", "onlyValid", "lang", "clientData"])
        var r = CredentialListRequest(userID: try o.string("userID"), clientData: try o.string("clientData"))
        if version == .v1 {
            r.maxResults = try o.int("maxResults")
            if let m = r.maxResults, m < 1 { throw CSCError.invalidRequest("Invalid parameter maxResults") }
            r.pageToken = try o.string("pageToken")
        } else {
            r.credentialInfo = try o.bool("credentialInfo") ?? false
            r.certificates = try CertificatesOption.parse(o.string("certificates"))
            r.certInfo = try o.bool("certInfo") ?? false
            r.authInfo = try o.bool("authInfo") ?? false
            r.onlyValid = try o.bool("onlyValid") ?? false
        }
        return r
    }

    public func encode(_ r: CredentialListRequest) -> JSONObject {
        var o = JSONObject()
        if let u = r.userID { o["userID"] = .string(u) }
        if let c = r.clientData { o["clientData"] = .string(c) }
        if version == .v1 {
            if let m = r.maxResults { o["maxResults"] = .int(m) }
            if let p = r.pageToken { o["pageToken"] = .string(p) }
        } else {
            if r.credentialInfo {
                o["credentialInfo"] = .bool(true)
                o["certificates"] = .string(r.certificates.rawValue)
                o["certInfo"] = .bool(r.certInfo)
                o["authInfo"] = .bool(r.authInfo)
            }
            if r.onlyValid { o["onlyValid"] = .bool(true) }
        }
        return o
    }

    public func encode(_ r: CredentialListResult) -> JSONObject {
        var o = JSONObject(["credentialIDs": .strings(r.credentialIDs)])
        if version == .v1 {
            if let next = r.nextPageToken { o["nextPageToken"] = .string(next) }
        } else {
            if let infos = r.credentialInfos {
                o["credentialInfos"] = .array(zip(r.credentialIDs, infos).map { id, info in
                    var entry = encode(info)
                    entry["credentialID"] = .string(id)
                    return entry.value
                })
            }
            if let onlyValid = r.onlyValid { o["onlyValid"] = .bool(onlyValid) }
        }
        return o
    }

    public func decodeListResult(_ o: JSONObject) throws -> CredentialListResult {
        var r = CredentialListResult(credentialIDs: try o.stringArray("credentialIDs") ?? [],
                                     nextPageToken: try o.string("nextPageToken"))
        if let infos = try o.objectArray("credentialInfos") {
            var ids = [String](), decoded = [CredentialInfo]()
            for info in infos {
                ids.append(try info.requiredString("credentialID"))
                decoded.append(try decodeCredentialInfo(info))
            }
            r.credentialIDs = ids
            r.credentialInfos = decoded
        }
        r.onlyValid = try o.bool("onlyValid")
        return r
    }

    // MARK: credentials/info

    public func decodeCredentialInfoRequest(_ o: JSONObject) throws -> CredentialInfoRequest {
        let o = try normalised(o, allowed: ["credentialID", "certificates", "certInfo", "authInfo", "lang", "clientData"])
        return CredentialInfoRequest(
            credentialID: try o.requiredString("credentialID"),
            certificates: try CertificatesOption.parse(o.string("certificates")),
            certInfo: try o.bool("certInfo") ?? false, authInfo: try o.bool("authInfo") ?? false,
            lang: try o.string("lang"), clientData: try o.string("clientData"))
    }

    public func encode(_ r: CredentialInfoRequest) -> JSONObject {
        var o = JSONObject([
            "credentialID": .string(r.credentialID), "certificates": .string(r.certificates.rawValue),
            "certInfo": .bool(r.certInfo), "authInfo": .bool(r.authInfo),
        ])
        if let l = r.lang { o["lang"] = .string(l) }
        if let c = r.clientData { o["clientData"] = .string(c) }
        return o
    }

    public func encode(_ info: CredentialInfo) -> JSONObject {
        var key = JSONObject([
            "status": .string(info.key.status.rawValue), "algo": .strings(info.key.algorithms),
            "len": .int(info.key.length),
        ])
        if let curve = info.key.curve { key["curve"] = .string(curve) }
        var cert = JSONObject()
        if let s = info.cert.status { cert["status"] = .string(s.rawValue) }
        if let c = info.cert.certificates { cert["certificates"] = .strings(c) }
        for (name, value) in [("issuerDN", info.cert.issuerDN), ("serialNumber", info.cert.serialNumber),
                              ("subjectDN", info.cert.subjectDN), ("validFrom", info.cert.validFrom),
                              ("validTo", info.cert.validTo)] {
            if let value { cert[name] = .string(value) }
        }
        var o = JSONObject([
            "key": key.value, "cert": cert.value, "SCAL": .string(info.scal.rawValue),
            "multisign": .int(info.multisign),
        ])
        if let d = info.description { o["description"] = .string(d) }
        if let l = info.lang { o["lang"] = .string(l) }
        if version == .v1 {
            o["authMode"] = .string(info.authMode.rawValue)
            for factor in info.authFactors { o[factor.kind.rawValue] = encodeV1(factor).value }
        } else {
            if let q = info.signatureQualifier { o["signatureQualifier"] = .string(q) }
            o["auth"] = encodeV2Auth(info).value
        }
        return o
    }

    private func encodeV1(_ f: AuthFactor) -> JSONObject {
        var o = JSONObject(["presence": .string(f.presence)])
        for (name, value) in [("format", f.format), ("label", f.label), ("description", f.description),
                              ("type", f.otpType), ("ID", f.otpID), ("provider", f.provider)] {
            if let value { o[name] = .string(value) }
        }
        return o
    }

    /// v2 has no implicit mode: an implicit credential is shown as explicit with no objects,
    /// which v2 clients read as "authorize without authData".
    private func encodeV2Auth(_ info: CredentialInfo) -> JSONObject {
        var auth = JSONObject(["mode": .string(info.authMode == .oauth2code ? "oauth2code" : "explicit")])
        guard info.authMode == .explicit, !info.authFactors.isEmpty else { return auth }
        auth["objects"] = .array(info.authFactors.map { f in
            var o = JSONObject(["id": .string(f.kind.rawValue)])
            if f.kind == .otp && f.otpType == "online" {
                o["type"] = .string("ChallengeResponse")
            } else {
                o["type"] = .string("Password")
            }
            if let g = f.provider { o["generator"] = .string(g) }
            for (name, value) in [("format", f.format), ("label", f.label), ("description", f.description)] {
                if let value { o[name] = .string(value) }
            }
            return o.value
        })
        let required = info.authFactors.filter { $0.presence == "true" }.map(\.kind.rawValue)
        if !required.isEmpty { auth["expression"] = .string(required.joined(separator: " AND ")) }
        return auth
    }

    public func decodeCredentialInfo(_ o: JSONObject) throws -> CredentialInfo {
        let o = JSONObject(o.fields, lenient: true)
        guard let keyObject = try o.object("key") else {
            throw CSCError.invalidRequest("Missing (or invalid type) object parameter key")
        }
        let key = KeyInfo(
            status: KeyStatus(rawValue: try keyObject.string("status") ?? "enabled") ?? .disabled,
            algorithms: try keyObject.stringArray("algo") ?? [],
            length: try keyObject.int("len") ?? 0,
            curve: try keyObject.string("curve"))
        var cert = CertInfo()
        if let c = try o.object("cert") {
            cert = CertInfo(
                status: (try c.string("status")).flatMap(CertificateStatus.init(rawValue:)),
                certificates: try c.stringArray("certificates"), issuerDN: try c.string("issuerDN"),
                serialNumber: try c.string("serialNumber"), subjectDN: try c.string("subjectDN"),
                validFrom: try c.string("validFrom"), validTo: try c.string("validTo"))
        }
        var info = CredentialInfo(
            description: try o.string("description"), signatureQualifier: try o.string("signatureQualifier"),
            key: key, cert: cert, authMode: .implicit,
            scal: SCAL(rawValue: try o.string("SCAL") ?? "1") ?? .one,
            multisign: max(1, try o.int("multisign") ?? 1), lang: try o.string("lang"))
        if let auth = try o.object("auth") {
            info.authMode = AuthMode(rawValue: try auth.string("mode") ?? "explicit") ?? .explicit
            for object in try auth.objectArray("objects") ?? [] {
                let id = try object.string("id") ?? ""
                let type = try object.string("type") ?? "Password"
                let generator = try object.string("generator")
                let isOTP = id.uppercased().contains("OTP") || type.hasPrefix("Challenge") || generator != nil
                info.authFactors.append(AuthFactor(
                    kind: isOTP ? .otp : .pin, presence: "true", format: try object.string("format"),
                    label: try object.string("label"), description: try object.string("description"),
                    otpType: isOTP ? (type.hasPrefix("Challenge") || type.hasSuffix("OOB") ? "online" : "offline") : nil,
                    provider: generator))
            }
            // An explicit v2 credential with no objects behaves as implicit for the gateway.
            if info.authMode == .explicit && info.authFactors.isEmpty { info.authMode = .implicit }
        } else {
            info.authMode = AuthMode(rawValue: try o.string("authMode") ?? "implicit") ?? .implicit
            for kind in [AuthFactor.Kind.pin, .otp] {
                guard let f = try o.object(kind.rawValue) else { continue }
                info.authFactors.append(AuthFactor(
                    kind: kind, presence: try f.string("presence") ?? "true", format: try f.string("format"),
                    label: try f.string("label"), description: try f.string("description"),
                    otpType: try f.string("type"), otpID: try f.string("ID"), provider: try f.string("provider")))
            }
        }
        return info
    }

    // MARK: credentials/authorize

    public func decodeAuthorizeRequest(_ o: JSONObject) throws -> AuthorizeRequest {
        let o = try normalised(o, allowed: Set(["credentialID", "numSignatures", hashesKey, hashAlgoKey, "description", "clientData"])
            .union(version == .v1 ? ["PIN", "OTP"] : ["authData"]))
        let num = try o.requiredInt("numSignatures")
        guard num >= 1 else { throw CSCError.invalidRequest("Invalid value for parameter numSignatures") }
        var r = AuthorizeRequest(
            credentialID: try o.requiredString("credentialID"), numSignatures: num,
            hashes: try o.base64Array(hashesKey), hashAlgorithm: try o.string(hashAlgoKey),
            description: try o.string("description"), clientData: try o.string("clientData"))
        if let d = r.description, d.count > 500 { throw CSCError.invalidRequest("Invalid parameter description") }
        if version == .v1 {
            r.pin = try o.string("PIN")
            r.otp = try o.string("OTP")
        } else {
            for item in try o.objectArray("authData") ?? [] {
                let id = try item.requiredString("id")
                let value = try item.string("value")
                switch id.uppercased() {
                case "PIN": r.pin = value
                case let s where s.contains("OTP"): r.otp = value
                default: throw CSCError.invalidRequest("Invalid parameter authData: unknown object id '\(id)'")
                }
            }
            if r.hashes != nil && r.hashAlgorithm == nil {
                throw CSCError.invalidRequest("Missing (or invalid type) string parameter hashAlgorithmOID")
            }
        }
        if let hashes = r.hashes, hashes.isEmpty { throw CSCError.invalidRequest("Empty \(hashesKey) array") }
        return r
    }

    public func encode(_ r: AuthorizeRequest) -> JSONObject {
        var o = JSONObject(["credentialID": .string(r.credentialID), "numSignatures": .int(r.numSignatures)])
        if let h = r.hashes { o[hashesKey] = .strings(h.map { $0.base64EncodedString() }) }
        // v1 authorize has no hash algorithm field; v2 wants one whenever hashes are sent.
        if version == .v2, let a = r.hashAlgorithm, r.hashes != nil { o[hashAlgoKey] = .string(a) }
        if version == .v1 {
            if let p = r.pin { o["PIN"] = .string(p) }
            if let p = r.otp { o["OTP"] = .string(p) }
        } else {
            var authData = [JSONValue]()
            if let p = r.pin { authData.append(.object(["id": .string("PIN"), "value": .string(p)])) }
            if let p = r.otp { authData.append(.object(["id": .string("OTP"), "value": .string(p)])) }
            if !authData.isEmpty { o["authData"] = .array(authData) }
        }
        if let d = r.description { o["description"] = .string(d) }
        if let c = r.clientData { o["clientData"] = .string(c) }
        return o
    }

    public func encode(_ r: AuthorizeResult) -> JSONObject {
        JSONObject(["SAD": .string(r.sad), "expiresIn": .int(r.expiresIn)])
    }

    public func decodeAuthorizeResult(_ o: JSONObject) throws -> AuthorizeResult {
        let o = JSONObject(o.fields, lenient: true)
        if o.has("handle") && !o.has("SAD") {
            throw CSCError.notImplemented("Out-of-band authorization (HTTP 202 with a handle) is not supported")
        }
        return AuthorizeResult(sad: try o.requiredString("SAD"), expiresIn: try o.int("expiresIn") ?? 3600)
    }

    // MARK: credentials/extendTransaction

    public func decodeExtendRequest(_ o: JSONObject) throws -> ExtendTransactionRequest {
        let o = try normalised(o, allowed: ["credentialID", "SAD", hashesKey, hashAlgoKey, "clientData"])
        let r = ExtendTransactionRequest(
            credentialID: try o.requiredString("credentialID"), sad: try o.requiredString("SAD"),
            hashes: try o.base64Array(hashesKey), hashAlgorithm: try o.string(hashAlgoKey),
            clientData: try o.string("clientData"))
        if let hashes = r.hashes, hashes.isEmpty { throw CSCError.invalidRequest("Empty \(hashesKey) array") }
        return r
    }

    public func encode(_ r: ExtendTransactionRequest) -> JSONObject {
        var o = JSONObject(["credentialID": .string(r.credentialID), "SAD": .string(r.sad)])
        if let h = r.hashes { o[hashesKey] = .strings(h.map { $0.base64EncodedString() }) }
        if version == .v2, let a = r.hashAlgorithm, r.hashes != nil { o[hashAlgoKey] = .string(a) }
        if let c = r.clientData { o["clientData"] = .string(c) }
        return o
    }

    // MARK: credentials/sendOTP (v1) and credentials/getChallenge (v2)

    public func decodeChallengeRequest(_ o: JSONObject) throws -> ChallengeRequest {
        ChallengeRequest(credentialID: try o.requiredString("credentialID"),
                         authObjectID: version == .v2 ? try o.requiredString("authObjectID") : nil,
                         clientData: try o.string("clientData"))
    }

    public func encode(_ r: ChallengeRequest) -> JSONObject {
        var o = JSONObject(["credentialID": .string(r.credentialID)])
        if version == .v2 { o["authObjectID"] = .string(r.authObjectID ?? "OTP") }
        if let c = r.clientData { o["clientData"] = .string(c) }
        return o
    }

    public var challengeMethod: CSCMethod { version == .v1 ? .credentialsSendOTP : .credentialsGetChallenge }

    // MARK: signatures/signHash

    public func decodeSignHashRequest(_ o: JSONObject) throws -> SignHashRequest {
        let o = try normalised(o, allowed: ["credentialID", "SAD", hashesKey, hashAlgoKey, "signAlgo", "signAlgoParams",
                                            "operationMode", "validity_period", "response_uri", "clientData"])
        if version == .v2, let mode = try o.string("operationMode"), mode != "S" {
            if mode == "A" { throw CSCError.notImplemented("Asynchronous signing (operationMode A) is not supported") }
            throw CSCError.invalidRequest("Invalid parameter operationMode")
        }
        guard let hashes = try o.base64Array(hashesKey) else {
            throw CSCError.invalidRequest("Missing (or invalid type) array parameter \(hashesKey)")
        }
        guard !hashes.isEmpty else { throw CSCError.invalidRequest("Empty \(hashesKey) array") }
        var params: Data?
        if let p = try o.string("signAlgoParams") {
            guard let d = Data(base64Encoded: p), !d.isEmpty else {
                throw CSCError.invalidRequest("Invalid parameter signAlgoParams")
            }
            params = d
        }
        // SAD is optional on v2 (a credential-scope token may stand for it), required on v1.
        let sad = version == .v1 ? try o.requiredString("SAD") : try o.string("SAD")
        return SignHashRequest(
            credentialID: try o.requiredString("credentialID"), sad: sad, hashes: hashes,
            hashAlgorithm: try o.string(hashAlgoKey), signAlgorithm: try o.requiredString("signAlgo"),
            signAlgorithmParameters: params, clientData: try o.string("clientData"))
    }

    public func encode(_ r: SignHashRequest) -> JSONObject {
        var o = JSONObject([
            "credentialID": .string(r.credentialID),
            hashesKey: .strings(r.hashes.map { $0.base64EncodedString() }),
            "signAlgo": .string(r.signAlgorithm),
        ])
        if let s = r.sad { o["SAD"] = .string(s) }
        if let a = r.hashAlgorithm { o[hashAlgoKey] = .string(a) }
        if let p = r.signAlgorithmParameters { o["signAlgoParams"] = .string(p.base64EncodedString()) }
        if let c = r.clientData { o["clientData"] = .string(c) }
        return o
    }

    public func encode(_ r: SignHashResult) -> JSONObject {
        JSONObject(["signatures": .strings(r.signatures.map { $0.base64EncodedString() })])
    }

    public func decodeSignHashResult(_ o: JSONObject) throws -> SignHashResult {
        guard let sigs = try o.base64Array("signatures") else {
            throw CSCError.invalidRequest("Missing (or invalid type) array parameter signatures")
        }
        return SignHashResult(signatures: sigs)
    }

    // MARK: signatures/timestamp (the same names in v1 and v2)

    public func decodeTimestampRequest(_ o: JSONObject) throws -> TimestampRequest {
        let h = try o.requiredString("hash")
        guard let hash = Data(base64Encoded: h), !hash.isEmpty else {
            throw CSCError.invalidRequest("Invalid Base64 hash string parameter")
        }
        let nonce = try o.string("nonce")
        if let nonce, nonce.isEmpty || !nonce.allSatisfy(\.isHexDigit) {
            throw CSCError.invalidRequest("Invalid parameter nonce")
        }
        return TimestampRequest(hash: hash, hashAlgorithm: try o.requiredString("hashAlgo"), nonce: nonce,
                                clientData: try o.string("clientData"))
    }

    public func encode(_ r: TimestampRequest) -> JSONObject {
        var o = JSONObject(["hash": .string(r.hash.base64EncodedString()), "hashAlgo": .string(r.hashAlgorithm)])
        if let n = r.nonce { o["nonce"] = .string(n) }
        if let c = r.clientData { o["clientData"] = .string(c) }
        return o
    }

    public func encode(_ r: TimestampResult) -> JSONObject {
        JSONObject(["timestamp": .string(r.timestamp.base64EncodedString())])
    }

    public func decodeTimestampResult(_ o: JSONObject) throws -> TimestampResult {
        let t = try o.requiredString("timestamp")
        guard let d = Data(base64Encoded: t) else { throw CSCError.invalidRequest("Invalid parameter timestamp") }
        return TimestampResult(timestamp: d)
    }

    /// Reads a CSC error body from an upstream, if it is one.
    public static func decodeError(_ data: Data) -> (error: String, description: String?)? {
        guard let o = try? JSONObject(parsing: data, lenient: true), let e = try? o.string("error"), !e.isEmpty else {
            return nil
        }
        return (e, try? o.string("error_description"))
    }
}
