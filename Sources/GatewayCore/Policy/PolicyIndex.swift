import CSC
import Foundation

/// The outcome of the policy stage for one operation.
public struct PolicyDecision: Sendable, Equatable {
    /// nil when the operation may go on.
    public var denial: Denial?
    /// The rule that allowed it explicitly (`policy/rule`), if one did.
    public var allowedBy: String?
    /// Limits of every matching `limit` rule; applied by the limits stage.
    public var limits: [LimitSpec]

    public struct Denial: Sendable, Equatable {
        /// `policy/rule`, or `policy (default)` when a default deny decided.
        public var rule: String
        public var reason: String
    }

    public var isAllowed: Bool { denial == nil }

    public static let allowed = PolicyDecision(denial: nil, allowedBy: nil, limits: [])
}

/// A policy file ready for evaluation: its rules grouped by the operation they can match, so
/// an operation looks at only the rules that can apply to it, in file order.
struct CompiledPolicy: Sendable {
    let name: String
    let denyByDefault: Bool
    let byOperation: [String: [PolicyRule]]
    /// Rules that name no operation: what any operation not in `byOperation` sees.
    let anyOperation: [PolicyRule]
    let needsCertificate: Bool

    init(_ d: PolicyDocument) {
        name = d.name
        denyByDefault = d.defaultEffect == .deny
        var named = Set<String>()
        for r in d.rules {
            for c in r.conditions { if case .operation(let s) = c { named.formUnion(s) } }
        }
        var by = [String: [PolicyRule]]()
        for op in named {
            by[op] = d.rules.filter { r in
                r.conditions.allSatisfy { c in
                    if case .operation(let s) = c { return s.contains(op) }
                    return true
                }
            }
        }
        byOperation = by
        anyOperation = d.rules.filter { r in !r.conditions.contains { if case .operation = $0 { return true }; return false } }
        needsCertificate = d.rules.contains { $0.conditions.contains(where: \.needsCertificate) }
    }

    func rules(for operation: String) -> [PolicyRule] { byOperation[operation] ?? anyOperation }
}

/// Every policy that applies to every tenant, client and credential, resolved once per
/// configuration so that a decision is a few dictionary reads and condition checks.
///
/// Combining rule, the same everywhere (`policy test`, `explain`, the gateway):
/// 1. a matching `deny` rule denies, whatever else matches (deny overrides);
/// 2. otherwise a matching `allow` rule allows;
/// 3. otherwise the defaults decide: denied if any applicable policy file says `default: deny`,
///    allowed if all say `default: allow`, and allowed when no policy applies at all.
/// Limits of matching `limit` rules apply to every allowed operation.
public struct PolicyIndex: Sendable {
    struct TenantPolicies: Sendable {
        var base: [CompiledPolicy]
        var byClient: [String: [CompiledPolicy]]
        var byCredential: [String: [CompiledPolicy]]
    }

    public let documents: [String: PolicyDocument]
    let tenants: [String: TenantPolicies]

    public init(documents: [PolicyDocument], tenants: [TenantConfiguration]) {
        var docs = [String: PolicyDocument]()
        var compiled = [String: CompiledPolicy]()
        for d in documents {
            docs[d.name] = d
            compiled[d.name] = CompiledPolicy(d)
        }
        func resolve(_ names: [String], excluding: [String]) -> [CompiledPolicy] {
            var seen = Set(excluding)
            return names.compactMap { n in seen.insert(n).inserted ? compiled[n] : nil }
        }
        var byTenant = [String: TenantPolicies]()
        for t in tenants {
            let base = resolve(t.policies, excluding: [])
            var clients = [String: [CompiledPolicy]]()
            for c in t.clients where !c.policies.isEmpty { clients[c.id] = resolve(c.policies, excluding: t.policies) }
            var credentials = [String: [CompiledPolicy]]()
            for r in t.credentials where !r.policies.isEmpty { credentials[r.id] = resolve(r.policies, excluding: t.policies) }
            byTenant[t.id] = TenantPolicies(base: base, byClient: clients, byCredential: credentials)
        }
        self.documents = docs
        self.tenants = byTenant
    }

    public static let empty = PolicyIndex(documents: [], tenants: [])

    /// The policies that apply, tenant's first, then the client's, then the credential's.
    func applicable(tenant: String, client: String, credential: String?) -> [CompiledPolicy] {
        guard let t = tenants[tenant] else { return [] }
        let c = t.byClient[client]
        let r = credential.flatMap { t.byCredential[$0] }
        if c == nil && r == nil { return t.base }
        var out = t.base
        var seen = Set(out.map(\.name))
        for p in (c ?? []) + (r ?? []) where seen.insert(p.name).inserted { out.append(p) }
        return out
    }

    /// Whether any applicable rule looks at the signer certificate (parsing it costs).
    public func needsCertificate(tenant: String, client: String, credential: String?) -> Bool {
        applicable(tenant: tenant, client: client, credential: credential).contains(where: \.needsCertificate)
    }

    public func decide(_ f: OperationFacts) -> PolicyDecision {
        Self.decide(f, applicable(tenant: f.tenant, client: f.client, credential: f.credential))
    }

    /// The combining rule (see the type's documentation) over policies in order.
    static func decide(_ f: OperationFacts, _ policies: [CompiledPolicy]) -> PolicyDecision {
        if policies.isEmpty { return .allowed }
        var allowedBy: String?
        var limits = [LimitSpec]()
        var defaultDeny: String?
        for p in policies {
            if p.denyByDefault && defaultDeny == nil { defaultDeny = p.name }
            for rule in p.rules(for: f.operation) where rule.conditions.allSatisfy({ $0.holds(f) }) {
                switch rule.effect {
                case .deny(let reason):
                    return PolicyDecision(denial: .init(rule: "\(p.name)/\(rule.id)", reason: reason), allowedBy: nil, limits: [])
                case .allow:
                    if allowedBy == nil { allowedBy = "\(p.name)/\(rule.id)" }
                case .limit(let spec):
                    limits.append(spec)
                }
            }
        }
        if allowedBy == nil, let d = defaultDeny {
            return PolicyDecision(
                denial: .init(rule: "\(d) (default)",
                              reason: "No policy rule allows \(f.operation) here (policy '\(d)' denies by default)"),
                allowedBy: nil, limits: [])
        }
        return PolicyDecision(denial: nil, allowedBy: allowedBy, limits: limits)
    }

    /// Decides over a given list of policy files, as `policy test` does for one file.
    public static func decide(_ f: OperationFacts, documents: [PolicyDocument]) -> PolicyDecision {
        decide(f, documents.map(CompiledPolicy.init))
    }

    /// Every rule of every applicable policy, whether it matched and why, then the decision.
    public func explain(_ f: OperationFacts) -> [String] {
        let policies = applicable(tenant: f.tenant, client: f.client, credential: f.credential)
        return Self.explain(f, policies.compactMap { documents[$0.name] })
    }

    public static func explain(_ f: OperationFacts, _ documents: [PolicyDocument]) -> [String] {
        var lines = [String]()
        if documents.isEmpty { lines.append("no policy applies to tenant \(f.tenant), client \(f.client), credential \(f.credential ?? "(none)")") }
        for d in documents {
            lines.append("policy \(d.name) (\(d.file)), default \(d.defaultEffect.rawValue):")
            for rule in d.rules {
                let matched = rule.conditions.allSatisfy { $0.holds(f) }
                var effect = rule.effect.name
                if case .limit(let spec) = rule.effect { effect += " \(spec.summary)" }
                if case .deny(let reason) = rule.effect { effect += " \"\(reason)\"" }
                lines.append("  rule \(rule.id)\(rule.line.map { " (line \($0))" } ?? ""): \(matched ? "MATCHED" : "not matched") -> \(effect)")
                if rule.conditions.isEmpty { lines.append("    (no conditions: matches every operation)") }
                for c in rule.conditions { lines.append("    \(c.explain(f))") }
            }
        }
        let decision = decide(f, documents.map(CompiledPolicy.init))
        if let d = decision.denial {
            lines.append("decision: DENY by \(d.rule): \(d.reason)")
            lines.append("  (deny overrides: any matching deny rule wins; without allow, a default deny decides)")
        } else {
            let why = decision.allowedBy.map { "allowed by \($0)" }
                ?? (documents.isEmpty ? "no policy applies" : "no deny rule matched and every applicable default is allow")
            lines.append("decision: ALLOW (\(why))")
            for l in decision.limits { lines.append("  limit \(l.name): \(l.summary)") }
        }
        return lines
    }
}
