import CSC
import Foundation

/// The policy and limits stages, as every operation calls them: the pipelines say where they
/// run, these say how.
extension Gateway {
    /// What policy rules can see of an operation, from the caller, the credential's route and
    /// its upstream description. The certificate is parsed only when a rule looks at it.
    func operationFacts(_ caller: Caller, _ method: CSCMethod, _ context: OperationContext, policies: PolicyIndex,
                        route: CredentialRoute? = nil, credential: UpstreamCredential? = nil) -> OperationFacts {
        var f = OperationFacts(tenant: caller.tenantID, client: caller.clientID, operation: method.operation,
                               credential: route?.id, credentialLabels: route?.labels ?? [:], upstream: route?.upstream,
                               time: now(), source: context.clientAddress)
        if let info = credential?.info {
            f.scal = info.scal.rawValue
            f.signatureQualifier = info.signatureQualifier
            if let first = info.cert.certificates?.first,
               policies.needsCertificate(tenant: caller.tenantID, client: caller.clientID, credential: route?.id) {
                f.certificate = certificates.facts(base64: first)
            }
        }
        return f
    }

    /// Policy: the tenant's, client's and credential's rules decide; a denial is 403 with the
    /// rule's reason, and the usage event names the stage `policy`.
    func checkPolicy(_ facts: OperationFacts, _ policies: PolicyIndex, _ note: UsageNote?,
                     _ context: OperationContext) throws(CSCError) -> PolicyDecision {
        note?.stage("policy")
        let decision = policies.decide(facts)
        if let denial = decision.denial {
            context.logger.info("policy denied the operation", metadata: [
                "operation": .string(facts.operation), "rule": .string(denial.rule),
            ])
            throw CSCError(status: 403, error: "access_denied", description: denial.reason)
        }
        return decision
    }

    /// Limits: the decision's limit rules and the tenant plan's monthly quota, counted in
    /// `signatures` (hashes to sign) and requests. A refusal is 429; the event's stage is `limit`.
    func admit(_ decision: PolicyDecision, _ facts: OperationFacts, signatures: Int, _ note: UsageNote?,
               _ context: OperationContext) async throws(CSCError) -> Limits.Admission {
        note?.stage("limit")
        let tenant = directory.tenants[facts.tenant]
        if decision.limits.isEmpty && (signatures == 0 || tenant?.plan?.monthlyQuota == nil) { return .none }
        return try await limits.admit(decision.limits, facts: facts, signatures: signatures, plan: tenant?.plan,
                                      failMode: tenant?.counterStoreFailure ?? .closed, context)
    }

    /// Policy then limits, for operations that sign nothing; the caller finishes the admission
    /// when the operation ends.
    func admitOperation(_ facts: OperationFacts, _ policies: PolicyIndex, _ note: UsageNote?,
                        _ context: OperationContext) async throws(CSCError) -> Limits.Admission {
        let decision = try checkPolicy(facts, policies, note, context)
        return try await admit(decision, facts, signatures: 0, note, context)
    }
}
