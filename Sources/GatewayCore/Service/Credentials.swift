import CSC
import Foundation

// MARK: - info, credentials/list, credentials/info

extension Gateway {
    /// Methods every tenant can use, whatever its upstreams offer.
    static let coreMethods: [CSCMethod] = [
        .info, .authLogin, .authRevoke, .credentialsList, .credentialsInfo, .credentialsAuthorize,
        .credentialsExtendTransaction, .signaturesSignHash,
    ]

    /// `info` for a tenant tells only what that tenant can use: the methods its upstreams
    /// support and the algorithms of its credentials. Without a token, only the core methods.
    public func info(for caller: Caller?, _ context: OperationContext) async -> ServiceInfo {
        let s = configuration.service
        var methods = Self.coreMethods
        var algorithms = Set<String>()
        if let caller, let tenant = directory.tenants[caller.tenantID] {
            let upstreams = Set(tenant.credentials.map(\.upstream))
            for name in upstreams.sorted() {
                guard let backend = backends[name], let offered = try? await backend.methods(context) else { continue }
                if offered.contains(.credentialsSendOTP), !methods.contains(.credentialsSendOTP) {
                    methods.append(.credentialsSendOTP)
                }
            }
            // Configured explicitly by the operator: some RSSPs serve timestamps without advertising them.
            if tenant.timestampUpstream != nil { methods.append(.signaturesTimestamp) }
            for route in tenant.credentials {
                guard let backend = backends[route.upstream],
                      let credential = try? await catalog.credential(route, backend: backend, context) else { continue }
                algorithms.formUnion(credential.info.key.algorithms)
            }
        }
        return ServiceInfo(name: s.name, logo: s.logo, region: s.region, lang: s.lang, description: s.description,
                           authTypes: ["basic", "oauth2client"], oauth2: configuration.publicURL,
                           methods: methods, signAlgorithms: algorithms.sorted())
    }

    public func listCredentials(_ caller: Caller, _ request: CredentialListRequest, _ context: OperationContext,
                                _ note: UsageNote = UsageNote()) async throws -> CredentialListResult {
        if request.userID != nil {
            throw CSCError.invalidRequest("Invalid parameter userID: credentials belong to the tenant; omit userID")
        }
        let policies = snapshot.policies
        let admission = try await admitOperation(operationFacts(caller, .credentialsList, context, policies: policies),
                                                 policies, note, context)
        defer { admission.finish() }
        note.stage("upstream")
        let routes = directory.credentials(of: caller.tenantID)
        var result = CredentialListResult(credentialIDs: routes.map(\.id))
        if request.credentialInfo || request.onlyValid {
            var infos = [CredentialInfo?](repeating: nil, count: routes.count)
            try await withThrowingTaskGroup(of: (Int, CredentialInfo).self) { group in
                for (i, route) in routes.enumerated() {
                    group.addTask {
                        let info = try await self.credentialInfo(
                            caller, CredentialInfoRequest(credentialID: route.id, certificates: request.certificates,
                                                          certInfo: request.certInfo, authInfo: request.authInfo), context)
                        return (i, info)
                    }
                }
                for try await (i, info) in group { infos[i] = info }
            }
            var ids = [String](), kept = [CredentialInfo]()
            for (route, info) in zip(routes, infos) {
                guard let info else { continue }
                if request.onlyValid && !Self.isUsable(info, at: now()) { continue }
                ids.append(route.id)
                kept.append(info)
            }
            result = CredentialListResult(credentialIDs: ids, credentialInfos: request.credentialInfo ? kept : nil,
                                          onlyValid: request.onlyValid ? true : nil)
        }
        return try page(result, request)
    }

    /// v1 paging over the tenant's list: the page token is an opaque offset.
    private func page(_ result: CredentialListResult, _ request: CredentialListRequest) throws -> CredentialListResult {
        guard request.maxResults != nil || request.pageToken != nil else { return result }
        var offset = 0
        if let token = request.pageToken {
            guard let d = Data(base64URL: token), let s = String(data: d, encoding: .utf8), s.hasPrefix("offset:"),
                  let o = Int(s.dropFirst(7)), o >= 0, o <= result.credentialIDs.count else {
                throw CSCError.invalidRequest("Invalid parameter pageToken")
            }
            offset = o
        }
        let size = min(request.maxResults ?? 100, 100)
        let end = min(offset + size, result.credentialIDs.count)
        var paged = result
        paged.credentialIDs = Array(result.credentialIDs[offset..<end])
        paged.credentialInfos = result.credentialInfos.map { Array($0[offset..<end]) }
        paged.nextPageToken = end < result.credentialIDs.count ? Data("offset:\(end)".utf8).base64URL : nil
        return paged
    }

    /// A credential a client can sign with now: key enabled, certificate neither expired nor revoked.
    static func isUsable(_ info: CredentialInfo, at date: Date) -> Bool {
        guard info.key.status == .enabled else { return false }
        if let s = info.cert.status, s != .valid { return false }
        if let validTo = info.cert.validTo, let end = GeneralizedTime.parse(validTo), end < date { return false }
        return true
    }

    public func credentialInfo(_ caller: Caller, _ request: CredentialInfoRequest, _ context: OperationContext,
                               _ note: UsageNote = UsageNote()) async throws -> CredentialInfo {
        let policies = snapshot.policies
        let (route, backend, credential) = try await resolve(caller, request.credentialID, context, note)
        let admission = try await admitOperation(
            operationFacts(caller, .credentialsInfo, context, policies: policies, route: route, credential: credential),
            policies, note, context)
        defer { admission.finish() }
        note.stage("upstream")
        var info = credential.info
        if request.certInfo {
            // Fetched on demand: some upstreams (certomancer-csc-dummy) refuse certInfo, and the
            // rest of the description is still worth returning.
            var asked = CredentialInfoRequest(credentialID: route.upstreamCredentialID, certificates: .none, certInfo: true)
            asked.lang = request.lang
            if let detailed = try? await backend.credentialInfo(asked, context) {
                info.cert.issuerDN = detailed.cert.issuerDN
                info.cert.subjectDN = detailed.cert.subjectDN
                info.cert.serialNumber = detailed.cert.serialNumber
                info.cert.validFrom = detailed.cert.validFrom
                info.cert.validTo = detailed.cert.validTo
            }
        }
        switch request.certificates {
        case .none: info.cert.certificates = nil
        case .single: info.cert.certificates = info.cert.certificates.map { Array($0.prefix(1)) }
        case .chain: break
        }
        if !request.authInfo && info.authMode == .explicit {
            info.authFactors = info.authFactors.map { AuthFactor(kind: $0.kind, presence: $0.presence) }
        }
        if info.description == nil { info.description = route.description }
        if let verdict = await signerVerdict(route, credential, tenantID: caller.tenantID, context) {
            // What the gateway itself concluded, not what the upstream claims.
            switch verdict.status {
            case .good, .revoked, .expired, .notYetValid: info.cert.status = verdict.certificateStatus
            default: if verdict.passes { info.cert.status = .valid }
            }
            if !verdict.passes { info.key.status = .disabled }
        }
        return info
    }
}

// MARK: - credentials/authorize, extendTransaction, sendOTP/getChallenge, timestamp

extension Gateway {
    public func authorize(_ caller: Caller, _ request: AuthorizeRequest, _ context: OperationContext,
                          _ note: UsageNote = UsageNote()) async throws -> AuthorizeResult {
        let policies = snapshot.policies
        let (route, backend, credential) = try await resolve(caller, request.credentialID, context, note)
        let info = credential.info
        guard info.key.status == .enabled else {
            throw CSCError.invalidRequest("The credential identified by credentialID is disabled")
        }
        if info.authMode == .oauth2code {
            throw CSCError.invalidRequest("The credential identified by credentialID is authorized through OAuth2, not credentials/authorize")
        }
        guard request.numSignatures <= info.multisign else {
            throw CSCError.invalidRequest("Numbers of signatures is too high")
        }
        let hashAlgorithm = try hashAlgorithmForAuthorization(request)
        if info.scal == .two {
            guard let hashes = request.hashes, !hashes.isEmpty else {
                throw CSCError.invalidRequest("Missing (or invalid type) array parameter hash: the credential is SCAL 2")
            }
            guard hashes.count <= request.numSignatures else {
                throw CSCError.invalidRequest("Invalid value for parameter numSignatures: fewer than the hashes sent")
            }
        }
        var facts = operationFacts(caller, .credentialsAuthorize, context, policies: policies, route: route, credential: credential)
        facts.numSignatures = request.numSignatures
        facts.hashes = request.hashes?.count
        facts.hashAlgorithm = hashAlgorithm?.oid
        let admission = try await admitOperation(facts, policies, note, context)
        defer { admission.finish() }
        try await requireUsableCertificate(route, credential, caller, context, note)
        var upstreamRequest = request
        upstreamRequest.credentialID = route.upstreamCredentialID
        upstreamRequest.hashAlgorithm = hashAlgorithm?.oid
        note.stage("upstream")
        let granted = try await backend.authorize(upstreamRequest, context)
        let lifetime = max(1, min(granted.expiresIn, configuration.sad.maxLifetime))
        let claims = SADClaims(
            id: usage.newSADID(), tenantID: caller.tenantID, clientID: caller.clientID, credentialID: route.id,
            upstreamSAD: granted.sad, expires: unixNow + lifetime, upstreamExpires: unixNow + granted.expiresIn,
            numSignatures: request.numSignatures, hashAlgorithm: hashAlgorithm?.oid,
            hashes: info.scal == .two ? request.hashes?.map { $0.base64EncodedString() } : nil)
        context.logger.info("credential authorized", metadata: [
            "tenant": .string(caller.tenantID), "client": .string(caller.clientID), "credential": .string(route.id),
            "upstream": .string(route.upstream), "num_signatures": .stringConvertible(request.numSignatures),
        ])
        return AuthorizeResult(sad: try seal.seal(claims), expiresIn: lifetime)
    }

    /// v1 authorize carries no hash algorithm; it is inferred from the digest length (SHA-2),
    /// because a v2 upstream wants it whenever hashes are sent.
    func hashAlgorithmForAuthorization(_ request: AuthorizeRequest) throws -> HashAlgorithm? {
        guard let hashes = request.hashes else { return nil }
        let algorithm: HashAlgorithm
        if let oid = request.hashAlgorithm {
            algorithm = try HashAlgorithm.parse(oid, field: "hashAlgo")
        } else {
            guard let length = hashes.first?.count,
                  let inferred = [HashAlgorithm.sha256, .sha384, .sha512].first(where: { $0.digestLength == length }) else {
                throw CSCError.invalidRequest("Invalid digest value length")
            }
            algorithm = inferred
        }
        guard hashes.allSatisfy({ $0.count == algorithm.digestLength }) else {
            throw CSCError.invalidRequest("Invalid digest value length")
        }
        return algorithm
    }

    /// Opens a gateway SAD for this caller and credential; any mismatch reads as an invalid SAD
    /// so that a SAD of another tenant reveals nothing about it.
    func openSAD(_ sad: String, caller: Caller, credentialID: String) throws(CSCError) -> SADClaims {
        let claims = try seal.open(sad)
        guard claims.tenantID == caller.tenantID, claims.clientID == caller.clientID, claims.credentialID == credentialID else {
            throw .invalidRequest("Invalid parameter SAD")
        }
        guard claims.expires > unixNow else { throw .invalidRequest("SAD expired") }
        return claims
    }

    public func extendTransaction(_ caller: Caller, _ request: ExtendTransactionRequest, _ context: OperationContext,
                                  _ note: UsageNote = UsageNote()) async throws -> AuthorizeResult {
        let policies = snapshot.policies
        let (route, backend, credential) = try await resolve(caller, request.credentialID, context, note)
        note.stage("sad")
        let claims = try openSAD(request.sad, caller: caller, credentialID: route.id)
        var facts = operationFacts(caller, .credentialsExtendTransaction, context, policies: policies, route: route,
                                   credential: credential)
        facts.numSignatures = claims.numSignatures
        facts.hashes = request.hashes?.count
        facts.hashAlgorithm = request.hashAlgorithm ?? claims.hashAlgorithm
        let admission = try await admitOperation(facts, policies, note, context)
        defer { admission.finish() }
        note.stage("upstream")
        // Take what is left in one step; a signHash racing this extension finds the old SAD spent.
        let left = try await usage.retire(claims, logger: context.logger)
        do {
            let result = try await extend(claims, left: left, route, backend, credential, request, context)
            await usage.settle(claims, logger: context.logger)
            return result
        } catch {
            await usage.restore(claims, logger: context.logger)
            throw error
        }
    }

    private func extend(_ claims: SADClaims, left: Int, _ route: CredentialRoute, _ backend: any SigningBackend,
                        _ credential: UpstreamCredential, _ request: ExtendTransactionRequest,
                        _ context: OperationContext) async throws -> AuthorizeResult {
        guard left > 0 else { throw CSCError.invalidRequest("Invalid parameter SAD: its signatures are used up") }
        var next = claims
        next.id = usage.newSADID()
        next.numSignatures = left
        if credential.info.scal == .two {
            guard let hashes = request.hashes, !hashes.isEmpty else {
                throw CSCError.invalidRequest("Missing (or invalid type) array parameter hash: the credential is SCAL 2")
            }
            guard hashes.count <= left else { throw CSCError.invalidRequest("Numbers of signatures is too high") }
            let algorithm = try hashAlgorithmForAuthorization(
                AuthorizeRequest(credentialID: route.id, numSignatures: left, hashes: hashes,
                                 hashAlgorithm: request.hashAlgorithm ?? claims.hashAlgorithm))
            next.hashes = hashes.map { $0.base64EncodedString() }
            next.hashAlgorithm = algorithm?.oid
        }
        let offered = (try? await backend.methods(context)) ?? []
        if offered.contains(.credentialsExtendTransaction) {
            let extended = try await backend.extendTransaction(
                ExtendTransactionRequest(credentialID: route.upstreamCredentialID, sad: claims.upstreamSAD,
                                         hashes: request.hashes, hashAlgorithm: next.hashAlgorithm,
                                         clientData: request.clientData), context)
            next.upstreamSAD = extended.sad
            next.upstreamExpires = unixNow + extended.expiresIn
        } else if credential.info.scal == .two {
            // The upstream SAD covers only the hashes it was issued for; new ones need the upstream.
            throw CSCError.notImplemented("Upstream '\(route.upstream)' does not offer credentials/extendTransaction for SCAL 2 credentials")
        }
        // SCAL 1 without upstream support: the gateway re-seals the same upstream SAD, never past its expiry.
        next.expires = min(unixNow + configuration.sad.maxLifetime, next.upstreamExpires)
        guard next.expires > unixNow else { throw CSCError.invalidRequest("SAD expired") }
        return AuthorizeResult(sad: try seal.seal(next), expiresIn: next.expires - unixNow)
    }

    public func sendChallenge(_ caller: Caller, _ request: ChallengeRequest, _ context: OperationContext,
                              _ note: UsageNote = UsageNote()) async throws -> ChallengeResult {
        let policies = snapshot.policies
        let (route, backend, credential) = try await resolve(caller, request.credentialID, context, note)
        let admission = try await admitOperation(
            operationFacts(caller, .credentialsSendOTP, context, policies: policies, route: route, credential: credential),
            policies, note, context)
        defer { admission.finish() }
        note.stage("upstream")
        guard credential.info.authFactors.contains(where: { $0.kind == .otp && $0.otpType == "online" }) else {
            throw CSCError.invalidRequest("The credential identified by credentialID has no online OTP")
        }
        var upstreamRequest = request
        upstreamRequest.credentialID = route.upstreamCredentialID
        return try await backend.sendChallenge(upstreamRequest, context)
    }

    public func timestamp(_ caller: Caller, _ request: TimestampRequest, _ context: OperationContext,
                          _ note: UsageNote = UsageNote()) async throws -> TimestampResult {
        let current = snapshot
        guard let tenant = current.directory.tenants[caller.tenantID], let name = tenant.timestampUpstream else {
            throw CSCError.notImplemented("signatures/timestamp is not configured for this tenant")
        }
        var facts = operationFacts(caller, .signaturesTimestamp, context, policies: current.policies)
        facts.upstream = name
        facts.hashAlgorithm = request.hashAlgorithm
        let admission = try await admitOperation(facts, current.policies, note, context)
        defer { admission.finish() }
        note.stage("upstream")
        let algorithm = try HashAlgorithm.parse(request.hashAlgorithm, field: "hashAlgo")
        guard request.hash.count == algorithm.digestLength else { throw CSCError.invalidRequest("Invalid digest value length") }
        var upstreamRequest = request
        if let selector = tenant.timestampClientData { upstreamRequest.clientData = selector }
        return try await backend(name).timestamp(upstreamRequest, context)
    }
}

/// `YYYYMMDDHHMMSSZ`, as CSC writes certificate validity.
enum GeneralizedTime {
    static func parse(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMddHHmmss'Z'"
        return f.date(from: s)
    }
}
