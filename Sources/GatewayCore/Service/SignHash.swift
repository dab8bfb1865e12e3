import Crypto
import CSC
import Foundation

/// `signatures/signHash`, the gateway's main job, top to bottom. Each stage either passes or
/// stops the request with a CSC error that says what to fix; the usage note names the stage.
extension Gateway {
    public func signHash(_ caller: Caller, _ request: SignHashRequest, _ context: OperationContext,
                         _ note: UsageNote = UsageNote()) async throws -> SignHashResult {
        // 1. Bounds: a request too large to be honest is refused before any work.
        note.stage("request")
        guard request.hashes.count <= configuration.maxHashesPerRequest else {
            throw CSCError.invalidRequest("Too many hashes in one request (at most \(configuration.maxHashesPerRequest))")
        }

        // 2. Credential: the tenant's id, resolved to its upstream (another tenant's id is unknown).
        let policies = snapshot.policies
        let (route, backend, credential) = try await resolve(caller, request.credentialID, context, note)
        guard credential.info.key.status == .enabled else {
            throw CSCError.invalidRequest("The credential identified by credentialID is disabled")
        }

        // 3. SAD: sealed by this gateway for this tenant, client and credential, and unexpired.
        note.stage("sad")
        guard let sad = request.sad else { throw CSCError.invalidRequest("Missing (or invalid type) string parameter SAD") }
        let claims = try openSAD(sad, caller: caller, credentialID: route.id)

        // 4. Algorithms: signAlgo among the credential's, digests of the right length.
        note.stage("algorithm")
        guard credential.info.key.algorithms.contains(request.signAlgorithm) else {
            throw CSCError.invalidRequest("Invalid parameter signAlgo")
        }
        let hash = try hashAlgorithm(for: request, claims: claims, keyBits: credential.info.key.length)
        if let hash {
            guard request.hashes.allSatisfy({ $0.count == hash.digestLength }) else {
                throw CSCError.invalidRequest("Invalid digest value length")
            }
        }

        // 5. Policy: the tenant's, client's and credential's rules allow, deny with a reason, or limit.
        var facts = operationFacts(caller, .signaturesSignHash, context, policies: policies, route: route, credential: credential)
        facts.signAlgorithm = request.signAlgorithm
        facts.hashAlgorithm = hash?.oid
        facts.hashes = request.hashes.count
        facts.numSignatures = claims.numSignatures
        let decision = try checkPolicy(facts, policies, note, context)

        // 6. Retry: the same request id already signed this; answer again, sign and bill nothing new.
        // Only a request id the client chose can come again, so only then is the answer kept.
        note.stage("retry")
        let fingerprint = context.requestIDFromClient ? Self.fingerprint(route.id, request) : nil
        if let fingerprint, let earlier = try await recordedAnswer(caller, context, fingerprint: fingerprint) {
            note.signed(earlier.signatures.count, signAlgorithm: request.signAlgorithm, hashAlgorithm: hash?.oid,
                        answer: Self.answer(fingerprint, earlier))
            return earlier
        }

        // 7. Budget and binding: count and (SCAL 2) hashes come out of the SAD, whatever the upstream checks.
        note.stage("budget")
        let encodedHashes = request.hashes.map { $0.base64EncodedString() }
        try await usage.consume(claims, hashes: encodedHashes, logger: context.logger)

        // 8. Limits: rates, concurrency and the monthly quota, counted in signatures; a refusal gives the budget back.
        let admission: Limits.Admission
        do {
            admission = try await admit(decision, facts, signatures: request.hashes.count, note, context)
        } catch {
            await usage.refund(claims, hashes: encodedHashes, logger: context.logger)
            throw error
        }
        defer { admission.finish() }

        // 9. Signer certificate: valid, trusted, fit for signing, not revoked (OCSP verdict, cached).
        do {
            try await requireUsableCertificate(route, credential, caller, context, note)
        } catch {
            await usage.refund(claims, hashes: encodedHashes, logger: context.logger)
            admission.cancel(context)
            throw error
        }

        // 10. Upstream: its own credential id, its own SAD, an algorithm it accepts. A failure gives back budget and quota.
        note.stage("upstream")
        let (signAlgo, hashAlgo) = credential.upstreamAlgorithm(for: request.signAlgorithm, hash: hash)
        let upstreamRequest = SignHashRequest(
            credentialID: route.upstreamCredentialID, sad: claims.upstreamSAD, hashes: request.hashes,
            hashAlgorithm: hashAlgo, signAlgorithm: signAlgo, signAlgorithmParameters: request.signAlgorithmParameters,
            clientData: request.clientData)
        // Its ok event is made durable meanwhile, so the answer waits for the slower of the two.
        let reservation = reserveSigning(caller, context, note, signatures: request.hashes.count,
                                         signAlgorithm: request.signAlgorithm, hashAlgorithm: hash?.oid)
        let signed: SignHashResult
        let upstreamStarted = ContinuousClock.now
        do {
            signed = try await backend.signHash(upstreamRequest, context)
            context.logger.debug("upstream answered", metadata: [
                "upstream": .string(route.upstream), "upstream_ms": .string(Self.milliseconds(since: upstreamStarted)),
            ])
        } catch {
            // The failure, recorded next, releases the reservation (written after it).
            await usage.refund(claims, hashes: encodedHashes, logger: context.logger)
            admission.cancel(context)
            throw error
        }
        try await confirm(reservation, context)

        // 11. Answer: one signature per hash, ECDSA in the encoding the OID promises.
        note.stage("response")
        guard signed.signatures.count == request.hashes.count else {
            admission.cancel(context)
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
        let result = SignHashResult(signatures: signatures)
        // 12. Record: `perform` ends the reservation with the ok event (or, without one, writes it durably).
        note.signed(signatures.count, signAlgorithm: request.signAlgorithm, hashAlgorithm: hash?.oid,
                    answer: fingerprint.map { Self.answer($0, result) })
        context.logger.info("hashes signed", metadata: [
            "credential": .string(route.id), "upstream": .string(route.upstream),
            "signatures": .stringConvertible(signatures.count), "sign_algo": .string(request.signAlgorithm),
        ])
        return result
    }

    /// The hash the signature covers: fixed by signAlgo, or named by hashAlgo (required for
    /// raw RSA), or recorded at authorization. A redundant hashAlgo is accepted and ignored.
    func hashAlgorithm(for request: SignHashRequest, claims: SADClaims, keyBits: Int) throws -> HashAlgorithm? {
        if let implied = SignatureAlgorithm.impliedHash(request.signAlgorithm) { return implied }
        if request.signAlgorithm == SignatureAlgorithm.rsassaPSS {
            // For PSS the parameters name the hash; a hashAlgo that contradicts them is refused.
            guard let der = request.signAlgorithmParameters else {
                throw CSCError.invalidRequest("Missing (or invalid type) string parameter signAlgoParams")
            }
            let pss = try PSSParameters.parse(der)
            if let oid = request.hashAlgorithm, oid != pss.hash.oid {
                throw CSCError.invalidRequest("Invalid parameter hashAlgo: signAlgoParams names another hash")
            }
            if keyBits > 0, pss.saltLength > pss.maxSaltLength(keyBits: keyBits) {
                throw CSCError.invalidRequest(
                    "Invalid parameter signAlgoParams: salt length \(pss.saltLength) is too long for a \(keyBits)-bit key with this hash (at most \(pss.maxSaltLength(keyBits: keyBits)))")
            }
            return pss.hash
        }
        if let oid = request.hashAlgorithm { return try HashAlgorithm.parse(oid, field: "hashAlgo") }
        if request.signAlgorithm == SignatureAlgorithm.rsaEncryption {
            throw CSCError.invalidRequest("Missing (or invalid type) string parameter hashAlgo")
        }
        return claims.hashAlgorithm.flatMap(HashAlgorithm.init(rawValue:))
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> String {
        let d = ContinuousClock.now - start
        return String(format: "%.3f", Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
    }

    /// What a retried request must match to get the earlier answer: same credential, algorithm, hashes.
    static func fingerprint(_ credentialID: String, _ request: SignHashRequest) -> String {
        var h = SHA256()
        h.update(data: Data(credentialID.utf8))
        h.update(data: Data(request.signAlgorithm.utf8))
        for d in request.hashes { h.update(data: d) }
        return Data(h.finalize()).base64EncodedString()
    }

    static func answer(_ fingerprint: String, _ result: SignHashResult) -> Data {
        JSONObject(["fingerprint": .string(fingerprint),
                    "signatures": .strings(result.signatures.map { $0.base64EncodedString() })]).serialized()
    }

    private func recordedAnswer(_ caller: Caller, _ context: OperationContext, fingerprint: String) async throws -> SignHashResult? {
        // A request id the gateway made up is new by construction: no lookup needed.
        guard let ledger, context.requestIDFromClient else { return nil }
        let id = UsageEvent.eventID(tenantID: caller.tenantID, clientID: caller.clientID, requestID: context.requestID,
                                    operation: CSCMethod.signaturesSignHash.operation)
        guard let event = try await ledger.recordedEvent(id: id), event.outcome == .ok, let answer = event.answer,
              let o = try? JSONObject(parsing: answer), let stored = try? o.string("fingerprint"),
              let signatures = try? o.base64Array("signatures") else { return nil }
        guard stored == fingerprint else {
            throw CSCError.invalidRequest("Request id \(context.requestID) was already used for a different signHash")
        }
        context.logger.notice("retried signHash answered from the ledger", metadata: ["event_id": .string(id)])
        return SignHashResult(signatures: signatures)
    }
}
