import CSC
import Foundation

/// `signatures/signHash`, the gateway's main job, top to bottom. Each stage either passes or
/// stops the request with a CSC error that says what to fix.
extension Gateway {
    public func signHash(_ caller: Caller, _ request: SignHashRequest, _ context: OperationContext) async throws -> SignHashResult {
        // 1. Bounds: a request too large to be honest is refused before any work.
        guard request.hashes.count <= configuration.maxHashesPerRequest else {
            throw CSCError.invalidRequest("Too many hashes in one request (at most \(configuration.maxHashesPerRequest))")
        }

        // 2. Credential: the tenant's id, resolved to its upstream (another tenant's id is unknown).
        let (route, backend, credential) = try await resolve(caller, request.credentialID, context)
        guard credential.info.key.status == .enabled else {
            throw CSCError.invalidRequest("The credential identified by credentialID is disabled")
        }

        // 3. SAD: sealed by this gateway for this tenant, client and credential, and unexpired.
        guard let sad = request.sad else { throw CSCError.invalidRequest("Missing (or invalid type) string parameter SAD") }
        let claims = try openSAD(sad, caller: caller, credentialID: route.id)

        // 4. Algorithms: signAlgo among the credential's, digests of the right length.
        guard credential.info.key.algorithms.contains(request.signAlgorithm) else {
            throw CSCError.invalidRequest("Invalid parameter signAlgo")
        }
        let hash = try hashAlgorithm(for: request, claims: claims)
        if let hash {
            guard request.hashes.allSatisfy({ $0.count == hash.digestLength }) else {
                throw CSCError.invalidRequest("Invalid digest value length")
            }
        }

        // 5. Budget and binding: count and (SCAL 2) hashes come out of the SAD, whatever the upstream checks.
        let encodedHashes = request.hashes.map { $0.base64EncodedString() }
        try await usage.consume(claims, hashes: encodedHashes)

        // 6. Upstream: its own credential id, its own SAD, an algorithm it accepts.
        let (signAlgo, hashAlgo) = credential.upstreamAlgorithm(for: request.signAlgorithm, hash: hash)
        let upstreamRequest = SignHashRequest(
            credentialID: route.upstreamCredentialID, sad: claims.upstreamSAD, hashes: request.hashes,
            hashAlgorithm: hashAlgo, signAlgorithm: signAlgo, signAlgorithmParameters: request.signAlgorithmParameters,
            clientData: request.clientData)
        let signed: SignHashResult
        do {
            signed = try await backend.signHash(upstreamRequest, context)
        } catch {
            await usage.refund(claims, hashes: encodedHashes)
            throw error
        }

        // 7. Answer: one signature per hash, ECDSA in the encoding the OID promises.
        guard signed.signatures.count == request.hashes.count else {
            throw CSCError.upstreamFailed(route.upstream, "returned \(signed.signatures.count) signatures for \(request.hashes.count) hashes")
        }
        var signatures = signed.signatures
        if SignatureAlgorithm.isECDSA(request.signAlgorithm) {
            signatures = try signatures.map {
                guard let s = ECDSASignatureEncoding.normalise($0, for: request.signAlgorithm) else {
                    throw CSCError.upstreamFailed(route.upstream, "returned an ECDSA signature that cannot be read")
                }
                return s
            }
        }
        context.logger.info("hashes signed", metadata: [
            "tenant": .string(caller.tenantID), "client": .string(caller.clientID), "credential": .string(route.id),
            "upstream": .string(route.upstream), "signatures": .stringConvertible(signatures.count),
            "sign_algo": .string(request.signAlgorithm),
        ])
        return SignHashResult(signatures: signatures)
    }

    /// The hash the signature covers: fixed by signAlgo, or named by hashAlgo (required for
    /// raw RSA), or recorded at authorization. A redundant hashAlgo is accepted and ignored.
    func hashAlgorithm(for request: SignHashRequest, claims: SADClaims) throws -> HashAlgorithm? {
        if let implied = SignatureAlgorithm.impliedHash(request.signAlgorithm) { return implied }
        if let oid = request.hashAlgorithm { return try HashAlgorithm.parse(oid, field: "hashAlgo") }
        if request.signAlgorithm == SignatureAlgorithm.rsaEncryption {
            throw CSCError.invalidRequest("Missing (or invalid type) string parameter hashAlgo")
        }
        return claims.hashAlgorithm.flatMap(HashAlgorithm.init(rawValue:))
    }
}
