import Foundation

/// One thing a rule requires of an operation. A rule matches when all of its conditions hold;
/// a condition on a fact the operation does not have does not hold.
public enum PolicyCondition: Sendable {
    case tenant(Set<String>)
    case client(Set<String>)
    /// The credential id is one of `ids` or matches one of `globs`.
    case credential(ids: Set<String>, globs: [Glob])
    /// Every named label is present with one of the listed values.
    case labels([String: Set<String>])
    case upstream(Set<String>)
    case operation(Set<String>)
    case signAlgo(Set<String>)
    case hashAlgo(Set<String>)
    case hashes(ClosedRange<Int>)
    case numSignatures(ClosedRange<Int>)
    case scal(Set<String>)
    case signatureQualifier(Set<String>)
    case time(TimeWindow)
    case source([CIDR])
    /// Every named attribute has one of the listed values.
    case issuer([String: Set<String>])
    case subject([String: Set<String>])
    /// The certificate carries at least one of these policy OIDs.
    case certificatePolicies(Set<String>)
    /// nil: the qcStatements extension is present; otherwise each listed statement id is in it.
    case qcStatements(Set<String>?)

    public func holds(_ f: OperationFacts) -> Bool {
        switch self {
        case .tenant(let s): return s.contains(f.tenant)
        case .client(let s): return s.contains(f.client)
        case let .credential(ids, globs):
            guard let c = f.credential else { return false }
            return ids.contains(c) || globs.contains { $0.matches(c) }
        case .labels(let wanted):
            guard f.credential != nil else { return false }
            for (k, values) in wanted {
                guard let v = f.credentialLabels[k], values.contains(v) else { return false }
            }
            return true
        case .upstream(let s): return f.upstream.map(s.contains) ?? false
        case .operation(let s): return s.contains(f.operation)
        case .signAlgo(let s): return f.signAlgorithm.map(s.contains) ?? false
        case .hashAlgo(let s): return f.hashAlgorithm.map(s.contains) ?? false
        case .hashes(let r): return f.hashes.map(r.contains) ?? false
        case .numSignatures(let r): return f.numSignatures.map(r.contains) ?? false
        case .scal(let s): return f.scal.map(s.contains) ?? false
        case .signatureQualifier(let s): return f.signatureQualifier.map(s.contains) ?? false
        case .time(let w): return w.contains(f.time)
        case .source(let nets):
            guard let a = f.source else { return false }
            return nets.contains { $0.contains(a) }
        case .issuer(let wanted): return f.certificate.map { Self.attributesMatch($0.issuer, wanted) } ?? false
        case .subject(let wanted): return f.certificate.map { Self.attributesMatch($0.subject, wanted) } ?? false
        case .certificatePolicies(let s): return f.certificate.map { !$0.policies.isDisjoint(with: s) } ?? false
        case .qcStatements(let ids):
            guard let present = f.certificate?.qcStatements else { return false }
            return ids.map { $0.isSubset(of: present) } ?? true
        }
    }

    static func attributesMatch(_ have: [String: [String]], _ wanted: [String: Set<String>]) -> Bool {
        for (k, values) in wanted {
            guard let v = have[k], v.contains(where: values.contains) else { return false }
        }
        return true
    }

    /// Whether this condition needs the signer certificate parsed.
    var needsCertificate: Bool {
        switch self {
        case .issuer, .subject, .certificatePolicies, .qcStatements: true
        default: false
        }
    }

    /// One line for `policy explain`: what was required and what the operation had.
    public func explain(_ f: OperationFacts) -> String {
        let verdict = holds(f) ? "holds" : "fails"
        func list(_ s: Set<String>) -> String { "[" + s.sorted().joined(separator: ", ") + "]" }
        func opt(_ s: String?) -> String { s ?? "(none)" }
        func attrs(_ m: [String: Set<String>]) -> String {
            m.keys.sorted().map { "\($0) in \(list(m[$0] ?? []))" }.joined(separator: ", ")
        }
        let what: String
        switch self {
        case .tenant(let s): what = "tenant \(f.tenant) in \(list(s))"
        case .client(let s): what = "client \(f.client) in \(list(s))"
        case let .credential(ids, globs):
            what = "credential \(opt(f.credential)) in \(list(ids.union(globs.map(\.description))))"
        case .labels(let m):
            let have = f.credentialLabels.keys.sorted().map { "\($0)=\(f.credentialLabels[$0] ?? "")" }.joined(separator: ",")
            what = "credential labels {\(have)} have \(attrs(m))"
        case .upstream(let s): what = "upstream \(opt(f.upstream)) in \(list(s))"
        case .operation(let s): what = "operation \(f.operation) in \(list(s))"
        case .signAlgo(let s): what = "signAlgo \(opt(f.signAlgorithm)) in \(list(s))"
        case .hashAlgo(let s): what = "hashAlgo \(opt(f.hashAlgorithm)) in \(list(s))"
        case .hashes(let r): what = "hashes \(f.hashes.map(String.init) ?? "(none)") in \(r.lowerBound)...\(r.upperBound)"
        case .numSignatures(let r):
            what = "numSignatures \(f.numSignatures.map(String.init) ?? "(none)") in \(r.lowerBound)...\(r.upperBound)"
        case .scal(let s): what = "SCAL \(opt(f.scal)) in \(list(s))"
        case .signatureQualifier(let s): what = "signatureQualifier \(opt(f.signatureQualifier)) in \(list(s))"
        case .time(let w):
            let (day, minute) = w.local(f.time)
            what = "time \(TimeWindow.dayNames[day]) \(TimeWindow.clock(minute)) \(w.zone.identifier) within \(w)"
        case .source(let nets):
            what = "source \(f.source?.description ?? "(unknown)") in [\(nets.map(\.description).joined(separator: ", "))]"
        case .issuer(let m): what = "certificate issuer has \(attrs(m))" + (f.certificate == nil ? " (no certificate)" : "")
        case .subject(let m): what = "certificate subject has \(attrs(m))" + (f.certificate == nil ? " (no certificate)" : "")
        case .certificatePolicies(let s):
            what = "certificate policies \(list(f.certificate?.policies ?? [])) include one of \(list(s))"
        case .qcStatements(let ids):
            let have = f.certificate?.qcStatements.map(list) ?? "(no qcStatements)"
            what = ids.map { "qcStatements \(have) include \(list($0))" } ?? "qcStatements present (\(have))"
        }
        return "\(verdict): \(what)"
    }
}
