import CSC
import Foundation
import Yams

/// Reads `policies/*.yaml`. Like the other configuration files, every problem becomes an issue
/// with file and line, and a file with any issue is not used.
extension ConfigurationLoader {
    static let operations = Set(CSCMethod.allCases.map(\.operation))
    static let dayNumbers: [String: Int] = ["sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6]

    /// Every policy file of `directory` (a missing directory holds none).
    public static func loadPolicies(directory: String) -> (documents: [PolicyDocument], issues: [ConfigurationIssue]) {
        let fm = FileManager.default
        let files = ((try? fm.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
        var documents = [PolicyDocument]()
        var issues = [ConfigurationIssue]()
        var seen = [String: String]()
        for name in files {
            let path = directory + "/" + name
            let stem = URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent
            if let earlier = seen[stem] {
                issues.append(ConfigurationIssue(file: path, line: nil, message: "policy '\(stem)' is already defined in \(earlier)"))
                continue
            }
            seen[stem] = path
            let text = fm.contents(atPath: path).flatMap { String(data: $0, encoding: .utf8) } ?? ""
            let (doc, fileIssues) = parsePolicy(text, file: path, fileStem: stem)
            issues += fileIssues
            if let doc, fileIssues.isEmpty { documents.append(doc) }
        }
        return (documents, issues)
    }

    public static func parsePolicy(_ text: String, file: String, fileStem: String) -> (PolicyDocument?, [ConfigurationIssue]) {
        let log = IssueLog(file: file)
        guard let root = YAMLMap.document(text, log: log) else { return (nil, log.issues) }
        root.rejectUnknownKeys(["policy", "description", "default", "rules", "tests"])
        let name = root.string("policy") ?? fileStem
        if name != fileStem { log.add("policy name '\(name)' must match the file name '\(fileStem)'", at: root["policy"]) }
        var defaultEffect = PolicyDefault.allow
        if let text = root.string("default", required: true) {
            if let d = PolicyDefault(rawValue: text) { defaultEffect = d } else {
                log.add("'default' must be allow or deny", at: root["default"])
            }
        }
        var rules = [PolicyRule]()
        var ids = Set<String>()
        for (i, r) in root.mapList("rules").enumerated() {
            guard let rule = parseRule(r, index: i, policy: name) else { continue }
            if !ids.insert(rule.id).inserted { log.add("rule id '\(rule.id)' is used twice", at: r["id"] ?? r.node) }
            rules.append(rule)
        }
        var tests = [PolicyTestCase]()
        for (i, t) in root.mapList("tests").enumerated() {
            if let test = parseTest(t, index: i) { tests.append(test) }
        }
        return (PolicyDocument(name: name, file: file, defaultEffect: defaultEffect, rules: rules, tests: tests), log.issues)
    }

    static func parseRule(_ r: YAMLMap, index: Int, policy: String) -> PolicyRule? {
        r.rejectUnknownKeys(["id", "description", "when", "effect", "reason", "limit"])
        let id = r.string("id") ?? "rule-\(index + 1)"
        if !isIdentifier(id) { r.log.add("'\(r.key("id"))' may use only letters, digits, '.', '_' and '-'", at: r["id"]) }
        let conditions = r.map("when").map(parseConditions) ?? []
        guard let effectText = r.string("effect", required: true) else { return nil }
        let effect: PolicyEffect
        switch effectText {
        case "allow":
            effect = .allow
        case "deny":
            guard let reason = r.string("reason", required: true) else { return nil }
            effect = .deny(reason: String(reason.prefix(300)))
        case "limit":
            guard let m = r.map("limit", required: true), let spec = parseLimit(m, name: "\(policy)/\(id)") else { return nil }
            effect = .limit(spec)
        default:
            r.log.add("'\(r.key("effect"))' must be allow, deny or limit", at: r["effect"])
            return nil
        }
        if effectText != "deny", r["reason"] != nil { r.log.add("'\(r.key("reason"))' applies to deny rules only", at: r["reason"]) }
        if effectText != "limit", r["limit"] != nil { r.log.add("'\(r.key("limit"))' applies to limit rules only", at: r["limit"]) }
        return PolicyRule(id: id, line: r.node.mark?.line, conditions: conditions, effect: effect)
    }

    /// A scalar or a list of scalars, as a list.
    static func strings(_ m: YAMLMap, _ key: String) -> [String]? {
        guard let node = m[key] else { return nil }
        if case .scalar(let s) = node {
            guard !s.string.isEmpty else {
                m.log.add("'\(m.key(key))' must not be empty", at: node)
                return nil
            }
            return [s.string]
        }
        let values = m.stringList(key)
        if values.isEmpty { m.log.add("'\(m.key(key))' must be a value or a non-empty list", at: node) }
        return values.isEmpty ? nil : values
    }

    static func isOID(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
    }

    static func parseConditions(_ w: YAMLMap) -> [PolicyCondition] {
        w.rejectUnknownKeys(["tenant", "client", "credential", "labels", "upstream", "operation", "signAlgo", "hashAlgo",
                             "hashes", "numSignatures", "scal", "signatureQualifier", "time", "source", "certificate"])
        var out = [PolicyCondition]()
        if let v = strings(w, "tenant") { out.append(.tenant(Set(v))) }
        if let v = strings(w, "client") { out.append(.client(Set(v))) }
        if let v = strings(w, "credential") {
            let globs = v.filter { $0.contains("*") || $0.contains("?") }
            out.append(.credential(ids: Set(v).subtracting(globs), globs: globs.map(Glob.init)))
        }
        if let m = w.map("labels") { out.append(.labels(valueSets(m))) }
        if let v = strings(w, "upstream") { out.append(.upstream(Set(v))) }
        if let v = strings(w, "operation") {
            for op in v where !operations.contains(op) {
                w.log.add("'\(w.key("operation"))': unknown operation '\(op)' (e.g. signatures/signHash, credentials/authorize)",
                          at: w["operation"])
            }
            out.append(.operation(Set(v)))
        }
        for key in ["signAlgo", "hashAlgo"] {
            guard let v = strings(w, key) else { continue }
            for oid in v where !isOID(oid) { w.log.add("'\(w.key(key))': '\(oid)' is not a dotted OID", at: w[key]) }
            out.append(key == "signAlgo" ? .signAlgo(Set(v)) : .hashAlgo(Set(v)))
        }
        if let r = range(w, "hashes") { out.append(.hashes(r)) }
        if let r = range(w, "numSignatures") { out.append(.numSignatures(r)) }
        if w["scal"] != nil {
            let v: [String] = w["scal"]?.int.map { [String($0)] } ?? strings(w, "scal") ?? []
            for s in v where s != "1" && s != "2" { w.log.add("'\(w.key("scal"))' must be 1 or 2", at: w["scal"]) }
            out.append(.scal(Set(v)))
        }
        if let v = strings(w, "signatureQualifier") { out.append(.signatureQualifier(Set(v))) }
        if let t = w.map("time"), let window = parseTimeWindow(t) { out.append(.time(window)) }
        if let v = strings(w, "source") {
            var nets = [CIDR]()
            for s in v {
                if let c = CIDR(s) { nets.append(c) } else {
                    w.log.add("'\(w.key("source"))': '\(s)' is not an address or CIDR such as 10.0.0.0/8", at: w["source"])
                }
            }
            out.append(.source(nets))
        }
        if let c = w.map("certificate") {
            c.rejectUnknownKeys(["issuer", "subject", "policies", "qcStatements"])
            if let m = c.map("issuer") { out.append(.issuer(attributeSets(m))) }
            if let m = c.map("subject") { out.append(.subject(attributeSets(m))) }
            if let v = strings(c, "policies") {
                for oid in v where !isOID(oid) { c.log.add("'\(c.key("policies"))': '\(oid)' is not a dotted OID", at: c["policies"]) }
                out.append(.certificatePolicies(Set(v)))
            }
            if let node = c["qcStatements"] {
                if let b = node.bool {
                    if !b { c.log.add("'\(c.key("qcStatements"))': write true, or a list of statement OIDs", at: node) }
                    out.append(.qcStatements(nil))
                } else if let v = strings(c, "qcStatements") {
                    for oid in v where !isOID(oid) { c.log.add("'\(c.key("qcStatements"))': '\(oid)' is not a dotted OID", at: node) }
                    out.append(.qcStatements(Set(v)))
                }
            }
        }
        return out
    }

    static func valueSets(_ m: YAMLMap) -> [String: Set<String>] {
        var out = [String: Set<String>]()
        for (k, _) in m.pairs { if let v = strings(m, k) { out[k] = Set(v) } }
        return out
    }

    static func attributeSets(_ m: YAMLMap) -> [String: Set<String>] {
        var out = [String: Set<String>]()
        for (k, v) in valueSets(m) { out[CertificateFacts.attributeKey(k)] = v }
        return out
    }

    /// `hashes: 1` (exactly), or `hashes: {min: 1, max: 10}`.
    static func range(_ w: YAMLMap, _ key: String) -> ClosedRange<Int>? {
        guard let node = w[key] else { return nil }
        if let i = node.int { return i...i }
        guard let m = w.map(key) else { return nil }
        m.rejectUnknownKeys(["min", "max"])
        let lo = m.int("min", default: 0, range: 0...Int(Int32.max))
        let hi = m.int("max", default: Int(Int32.max), range: 0...Int(Int32.max))
        guard lo <= hi else {
            m.log.add("'\(w.key(key))': min is above max", at: node)
            return nil
        }
        return lo...hi
    }

    static func parseTimeWindow(_ t: YAMLMap) -> TimeWindow? {
        t.rejectUnknownKeys(["days", "from", "to", "zone"])
        var days = Set(0...6)
        if let names = strings(t, "days") {
            days = []
            for n in names {
                let key = String(n.lowercased().prefix(3))
                if let d = dayNumbers[key], n.count >= 3 { days.insert(d) } else {
                    t.log.add("'\(t.key("days"))': '\(n)' is not a day (mon, tue, wed, thu, fri, sat, sun)", at: t["days"])
                }
            }
        }
        func minutes(_ key: String, _ def: Int) -> Int {
            guard let s = t.string(key) else { return def }
            let parts = s.split(separator: ":")
            guard parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0...24).contains(h), (0...59).contains(m),
                  h * 60 + m <= 1440 else {
                t.log.add("'\(t.key(key))' must be a time such as 08:00 or 18:30", at: t[key])
                return def
            }
            return h * 60 + m
        }
        let from = minutes("from", 0), to = minutes("to", 1440)
        let zoneName = t.string("zone") ?? "UTC"
        guard let zone = TimeZone(identifier: zoneName) else {
            t.log.add("'\(t.key("zone"))': unknown time zone '\(zoneName)' (e.g. Europe/Berlin, UTC)", at: t["zone"])
            return nil
        }
        return TimeWindow(days: days, from: from, to: to, zone: zone)
    }

    /// `rate: 100, period: 1m, burst: 20, unit: signatures, scope: credential`, or `concurrency: 4`.
    static func parseLimit(_ m: YAMLMap, name: String) -> LimitSpec? {
        m.rejectUnknownKeys(["scope", "unit", "rate", "period", "burst", "concurrency"])
        guard let scopeText = m.string("scope", required: true) else { return nil }
        guard let scope = LimitSpec.Scope(rawValue: scopeText) else {
            m.log.add("'\(m.key("scope"))' must be one of tenant, client, credential, upstream", at: m["scope"])
            return nil
        }
        if m["concurrency"] != nil {
            for k in ["rate", "period", "burst", "unit"] where m[k] != nil {
                m.log.add("'\(m.key(k))' does not go with concurrency (a rate and a concurrency cap are two rules)", at: m[k])
            }
            return LimitSpec(name: name, scope: scope, kind: .concurrency(m.int("concurrency", default: 1, range: 1...100_000)))
        }
        guard m["rate"] != nil else {
            m.log.add("'\(m.key("rate"))' (units per period) or 'concurrency' is required", at: m.node)
            return nil
        }
        let rate = m.int("rate", default: 1, range: 1...1_000_000_000)
        let period = parseDuration(m, "period") ?? 1
        let burst = m.int("burst", default: rate, range: 1...1_000_000_000)
        let unitText = m.string("unit") ?? "signatures"
        guard let unit = LimitSpec.Unit(rawValue: unitText) else {
            m.log.add("'\(m.key("unit"))' must be signatures or requests", at: m["unit"])
            return nil
        }
        return LimitSpec(name: name, scope: scope, kind: .rate(rate: rate, period: period, burst: burst, unit: unit))
    }

    /// Seconds as a number, or `30s`, `5m`, `1h`, `1d`.
    static func parseDuration(_ m: YAMLMap, _ key: String) -> Double? {
        guard let node = m[key] else { return nil }
        if let i = node.int, i > 0 { return Double(i) }
        if let s = node.string, let unit = s.last, let n = Double(s.dropLast()), n > 0 {
            let factors: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
            let factor = factors[unit]
            if let factor, n * factor <= 366 * 86400 { return n * factor }
        }
        m.log.add("'\(m.key(key))' must be seconds or a duration such as 30s, 5m, 1h, 1d", at: node)
        return nil
    }

    static func parseTest(_ t: YAMLMap, index: Int) -> PolicyTestCase? {
        t.rejectUnknownKeys(["name", "operation", "expect", "reason", "limits"])
        let name = t.string("name") ?? "test \(index + 1)"
        guard let o = t.map("operation", required: true), let facts = parseFacts(o) else { return nil }
        guard let expect = t.string("expect", required: true) else { return nil }
        guard expect == "allow" || expect == "deny" else {
            t.log.add("'\(t.key("expect"))' must be allow or deny", at: t["expect"])
            return nil
        }
        let limits = t["limits"] == nil ? nil : t.stringList("limits")
        return PolicyTestCase(name: name, line: t.node.mark?.line, facts: facts, expectAllow: expect == "allow",
                              expectReason: t.string("reason"), expectLimits: limits)
    }

    /// An operation described in YAML (policy tests) with the facts the gateway would see.
    static func parseFacts(_ o: YAMLMap) -> OperationFacts? {
        o.rejectUnknownKeys(["tenant", "client", "operation", "credential", "labels", "upstream", "signAlgo", "hashAlgo",
                             "hashes", "numSignatures", "scal", "signatureQualifier", "time", "source", "certificate"])
        guard let operation = o.string("operation", required: true) else { return nil }
        if !operations.contains(operation) { o.log.add("'\(o.key("operation"))': unknown operation '\(operation)'", at: o["operation"]) }
        var time = Date(timeIntervalSince1970: 1_767_261_600)  // 2026-01-01T10:00:00Z, a Thursday
        if let text = o.string("time") {
            if let d = ISO8601DateFormatter().date(from: text) { time = d } else {
                o.log.add("'\(o.key("time"))' must be an ISO 8601 time such as 2026-03-02T09:30:00+01:00", at: o["time"])
            }
        }
        var source: IPAddress?
        if let s = o.string("source") {
            source = IPAddress(s)
            if source == nil { o.log.add("'\(o.key("source"))' is not an IP address", at: o["source"]) }
        }
        var labels = [String: String]()
        if let m = o.map("labels") { for (k, _) in m.pairs { if let v = m.string(k) { labels[k] = v } } }
        var certificate: CertificateFacts?
        if let c = o.map("certificate") {
            c.rejectUnknownKeys(["issuer", "subject", "policies", "qcStatements"])
            func attributes(_ key: String) -> [String: [String]] {
                guard let m = c.map(key) else { return [:] }
                var out = [String: [String]]()
                for (k, v) in valueSets(m) { out[CertificateFacts.attributeKey(k)] = v.sorted() }
                return out
            }
            certificate = CertificateFacts(issuer: attributes("issuer"), subject: attributes("subject"),
                                           policies: Set(strings(c, "policies") ?? []),
                                           qcStatements: c["qcStatements"] == nil ? nil : Set(c.stringList("qcStatements")))
        }
        func int(_ key: String) -> Int? { o[key] == nil ? nil : o.int(key, default: 0, range: 0...Int(Int32.max)) }
        return OperationFacts(
            tenant: o.string("tenant") ?? "tenant", client: o.string("client") ?? "client", operation: operation,
            credential: o.string("credential"), credentialLabels: labels, upstream: o.string("upstream"),
            signAlgorithm: o.string("signAlgo"), hashAlgorithm: o.string("hashAlgo"), hashes: int("hashes"),
            numSignatures: int("numSignatures"), scal: o["scal"]?.int.map { String($0) } ?? o.string("scal"),
            signatureQualifier: o.string("signatureQualifier"), time: time, source: source, certificate: certificate)
    }
}
