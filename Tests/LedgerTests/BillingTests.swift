import CSC
import Crypto
import Foundation
import GatewayCore
import Testing
@testable import Ledger

// Reports, invoices, the HTML page and the CloudEvents export over a generated mix of
// operations: every number must be the one the test sent, on both backends.

/// A deterministic mix: two months, four tenants (two resellers' customers), three upstreams,
/// ok / denied / failed, 1–5 signatures, and one retry in ten sent again with the same id.
struct GeneratedMix {
    struct Key: Hashable { var tenant: String; var month: String; var client: String }
    struct Counts: Equatable { var operations = 0, ok = 0, denied = 0, failed = 0, billed = 0 }

    var events: [UsageEvent] = []
    var retries: [UsageEvent] = []
    var expected: [Key: Counts] = [:]
    var byUpstreamDay: [String: [String: Int]] = [:]

    static let tenants = ["r1", "a", "b", "c"]
    static let january = Date(timeIntervalSince1970: 1_798_761_600)  // 2027-01-01T00:00:00Z
    static let february = Date(timeIntervalSince1970: 1_801_440_000)  // 2027-02-01
    static let march = Date(timeIntervalSince1970: 1_803_859_200)  // 2027-03-01

    init(count: Int = 600) {
        var rng = SplitMix(seed: 42)
        for n in 0..<count {
            let tenant = Self.tenants[Int(rng.next() % 4)]
            let client = ["app", "batch"][Int(rng.next() % 2)]
            let upstream = ["vendor-a", "vendor-b", "hsm"][Int(rng.next() % 3)]
            let roll = rng.next() % 10
            let outcome: UsageOutcome = roll < 7 ? .ok : (roll < 9 ? .denied : .failed)
            let signatures = outcome == .ok ? Int(1 + rng.next() % 5) : 0
            // Spread over January and February, at whole seconds.
            let time = Self.january.addingTimeInterval(Double(rng.next() % 59 * 86400 + rng.next() % 86400))
            let month = time < Self.february ? "2027-01" : "2027-02"
            let reason = outcome == .ok ? nil : (outcome == .denied ? "SAD <script>alert(1)</script> & \"expired\"" : "upstream timed out")
            let e = UsageEvent(
                id: UsageEvent.eventID(tenantID: tenant, clientID: client, requestID: "mix-\(n)", operation: "signatures/signHash"),
                time: time, tenantID: tenant, clientID: client, credentialID: "cred-\(n % 3)", upstream: upstream,
                operation: "signatures/signHash", signatures: signatures, signAlgorithm: "1.2.840.10045.4.3.2",
                outcome: outcome, stage: outcome == .ok ? nil : (outcome == .denied ? "sad" : "upstream"), reason: reason,
                latencyMicros: 500, requestID: "mix-\(n)", requestIDFromClient: true)
            events.append(e)
            if n % 10 == 0 { retries.append(e) }
            var c = expected[Key(tenant: tenant, month: month, client: client)] ?? Counts()
            c.operations += 1
            switch outcome {
            case .ok: c.ok += 1; c.billed += signatures
            case .denied: c.denied += 1
            case .failed: c.failed += 1
            }
            expected[Key(tenant: tenant, month: month, client: client)] = c
            if outcome == .ok {
                let day = UsageReport.dayKey(Int64(time.timeIntervalSince1970 / 86400))
                byUpstreamDay[tenant, default: [:]]["\(day) \(upstream)", default: 0] += signatures
            }
        }
    }

    func counts(tenant: String, month: String? = nil, client: String? = nil) -> Counts {
        expected.filter { $0.key.tenant == tenant && (month == nil || $0.key.month == month) && (client == nil || $0.key.client == client) }
            .values.reduce(Counts()) {
                Counts(operations: $0.operations + $1.operations, ok: $0.ok + $1.ok, denied: $0.denied + $1.denied,
                       failed: $0.failed + $1.failed, billed: $0.billed + $1.billed)
            }
    }

    static let plans: [String: TenantPlan] = [
        "a": TenantPlan(currency: "EUR", monthlyFee: Decimal(string: "49.90")!, includedSignatures: 100,
                        pricePerSignature: Decimal(string: "0.05")!, overagePrice: Decimal(string: "0.045")!),
        "b": TenantPlan(currency: "JPY", monthlyFee: 0, includedSignatures: 0, pricePerSignature: Decimal(string: "2.5")!,
                        overagePrice: Decimal(string: "2.5")!),
        "r1": TenantPlan(currency: "EUR", monthlyFee: 10, includedSignatures: 5, pricePerSignature: 0,
                         overagePrice: Decimal(string: "0.333333")!),
    ]

    /// The invoice the test expects, worked out independently of `MonthlyInvoice.price`.
    static func expectedTotal(_ plan: TenantPlan, billed: Int) -> (exact: Decimal, rounded: Decimal) {
        let included = Swift.min(billed, plan.includedSignatures)
        let exact = plan.monthlyFee + Decimal(included) * plan.pricePerSignature
            + Decimal(billed - included) * plan.overagePrice
        let scale = plan.currency == "JPY" ? 0 : 2
        var x = exact, r = Decimal()
        NSDecimalRound(&r, &x, scale, .plain)
        return (exact, r)
    }
}

/// A small PRNG so the mix is the same on every run and platform.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Reports, invoices, HTML and CloudEvents (SQLite and PostgreSQL)")
struct BillingTests {
    static func recorded(_ backend: Backend) async throws -> (TestLedger, GeneratedMix) {
        let t = try await TestLedger.make(backend, interval: 50)
        let mix = GeneratedMix()
        let ledger = t.ledger
        // Concurrently, as a gateway records, with the retries racing their originals.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for e in mix.events + mix.retries { group.addTask { try await ledger.record(e) } }
            try await group.waitForAll()
        }
        return (t, mix)
    }

    @Test("every number of a reseller's statement matches what was sent, per tenant, client and month",
          arguments: Backend.allCases)
    func statementNumbers(_ backend: Backend) async throws {
        let (t, mix) = try await Self.recorded(backend)
        let statement = try await t.withReader {
            try await UsageStatement.make($0, tenants: ["r1", "a", "b"], plans: GeneratedMix.plans, from: GeneratedMix.january,
                                          to: GeneratedMix.march, grouping: .client)
        }
        #expect(statement.sections.map(\.report.tenant) == ["r1", "a", "b"])
        for section in statement.sections {
            let tenant = section.report.tenant
            for line in section.report.lines {
                let e = mix.counts(tenant: tenant, client: line.key)
                let got: [Int] = [line.operations, line.ok, line.denied, line.failed, line.billedSignatures]
                let want: [Int] = [e.operations, e.ok, e.denied, e.failed, e.billed]
                #expect(got == want, "\(tenant) \(line.key)")
            }
            let all = mix.counts(tenant: tenant)
            #expect(section.report.total.operations == all.operations && section.report.total.billedSignatures == all.billed)
            let plan = try #require(GeneratedMix.plans[tenant])
            #expect(section.invoices.map(\.month) == ["2027-01", "2027-02"])
            for invoice in section.invoices {
                let billed = mix.counts(tenant: tenant, month: invoice.month).billed
                #expect(invoice.billedSignatures == billed)
                let expected = GeneratedMix.expectedTotal(plan, billed: billed)
                #expect(invoice.exactTotal == expected.exact)
                #expect(invoice.total == expected.rounded)
                #expect(invoice.lines.map(\.quantity).reduce(0, +) == 1 + billed)
            }
        }

        // A period inside February still invoices the whole month; the report covers the period.
        let mid = GeneratedMix.february.addingTimeInterval(10 * 86400)
        let partial = try await t.withReader {
            try await UsageStatement.make($0, tenants: ["a"], plans: GeneratedMix.plans, from: mid,
                                          to: mid.addingTimeInterval(5 * 86400), grouping: .outcome)
        }
        #expect(partial.sections[0].invoices.map(\.billedSignatures) == [mix.counts(tenant: "a", month: "2027-02").billed])
        #expect(partial.sections[0].report.total.operations < mix.counts(tenant: "a", month: "2027-02").operations)

        // JSON: the same numbers, money as decimal strings; sub-tenants nested.
        let json = try #require(try JSONSerialization.jsonObject(with: statement.json) as? [String: Any])
        #expect(json["tenant"] as? String == "r1")
        let subs = try #require(json["subtenants"] as? [[String: Any]])
        #expect(subs.map { $0["tenant"] as? String } == ["a", "b"])
        let aTotal = try #require(subs[0]["total"] as? [String: Any])
        #expect(aTotal["billed_signatures"] as? Int == mix.counts(tenant: "a").billed)
        let aInvoice = try #require(subs[0]["invoice"] as? [String: Any])
        let aMonths = try #require(aInvoice["months"] as? [[String: Any]])
        let janA = GeneratedMix.expectedTotal(GeneratedMix.plans["a"]!, billed: mix.counts(tenant: "a", month: "2027-01").billed)
        #expect(aMonths[0]["total"] as? String == Money.text(janA.rounded, currency: "EUR"))
        #expect(aMonths[0]["total_exact"] as? String == Money.text(janA.exact, currency: "EUR"))

        // CSV: the usage table then the invoice table; every billed number found again.
        let tables = statement.csv.components(separatedBy: "\n\n")
        #expect(tables.count == 2)
        let usage = tables[0].split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        #expect(usage[0] == ["tenant", "client", "operations", "ok", "denied", "failed", "billed_signatures"])
        for row in usage.dropFirst() {
            let e = row[1] == "total" ? mix.counts(tenant: row[0]) : mix.counts(tenant: row[0], client: row[1])
            let got: [Int] = row[2...6].compactMap { Int($0) }
            let want: [Int] = [e.operations, e.ok, e.denied, e.failed, e.billed]
            #expect(got == want, "\(row)")
        }
        let invoiceRows = tables[1].split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let bTotals = invoiceRows.filter { $0[0] == "b" && $0[3] == "total" }
        let bBilled: [Int] = bTotals.compactMap { Int($0[4]) }
        #expect(bBilled == ["2027-01", "2027-02"].map { mix.counts(tenant: "b", month: $0).billed })
        // JPY has no minor unit: whole yen.
        #expect(bTotals.allSatisfy { !$0[6].contains(".") })
        await t.close()
    }

    @Test("the HTML page is self-contained, well-formed, escaped, and shows the figures and the verification",
          arguments: Backend.allCases)
    func htmlPage(_ backend: Backend) async throws {
        let (t, mix) = try await Self.recorded(backend)
        let key = t.signer.publicKey
        let html = try await t.withReader { store in
            let statement = try await UsageStatement.make(store, tenants: ["a"], plans: GeneratedMix.plans,
                                                          from: GeneratedMix.january, to: GeneratedMix.march, grouping: .upstream)
            return try await CompliancePage.make(store, statement: statement, publicKey: key)
        }
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(!html.lowercased().contains("http://") && !html.lowercased().contains("https://"))
        #expect(!html.contains("<script") && !html.lowercased().contains("src="))
        #expect(html.contains("SAD &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;expired&quot;"))
        #expect(html.contains("<svg "))
        #expect(html.contains("Intact: \(mix.counts(tenant: "a").operations) events"))
        #expect(html.contains("<td class=\"n\">\(mix.counts(tenant: "a").billed)</td>"))
        // One bar segment per day and upstream with signatures, each titled with its figure.
        for (dayUpstream, n) in try #require(mix.byUpstreamDay["a"]) {
            #expect(html.contains("<title>\(dayUpstream): \(n)</title>"), "\(dayUpstream)")
        }
        #expect(try wellFormed(html))

        // After tampering, the page says so and names the event.
        try await t.tamper("UPDATE usage_events SET signatures = signatures + 1 WHERE tenant = 'a' AND seq = 3")
        let tampered = try await t.withReader { store in
            let statement = try await UsageStatement.make(store, tenants: ["a"], plans: [:], from: GeneratedMix.january,
                                                          to: GeneratedMix.march, grouping: .day)
            return try await CompliancePage.make(store, statement: statement, publicKey: key)
        }
        #expect(tampered.contains("Tampered: 1 break"))
        #expect(tampered.contains("the event was edited"))
        #expect(try wellFormed(tampered))
        await t.close()
    }

    @Test("event listing pages through everything once, with filters; CloudEvents ids are stable across exports",
          arguments: Backend.allCases)
    func listingAndExport(_ backend: Backend) async throws {
        let (t, mix) = try await Self.recorded(backend)
        var seen = [String](), cursor: UsageCursor?
        repeat {
            let page = try await t.ledger.usageEvents(UsageEventQuery(tenants: ["a", "b"], from: GeneratedMix.january,
                                                                      to: GeneratedMix.march, outcome: .denied,
                                                                      after: cursor, limit: 7))
            seen += page.map(\.event.id)
            cursor = page.count == 7 ? page.last.map(UsageCursor.init) : nil
        } while cursor != nil
        let expected = mix.events.filter { ["a", "b"].contains($0.tenantID) && $0.outcome == .denied }.map(\.id)
        #expect(seen.count == expected.count && Set(seen) == Set(expected))

        func export() async throws -> [String] {
            var lines = [String]()
            try await t.withReader { store in
                try await UsageCloudEvents.export(store, UsageEventQuery(tenants: nil, from: GeneratedMix.january,
                                                                         to: GeneratedMix.march)) { lines.append($0) }
            }
            return lines
        }
        let first = try await export()
        var late = event(77_777, tenant: "late")
        late.time = GeneratedMix.march.addingTimeInterval(3600)
        try await t.ledger.record(late)  // outside the period: changes nothing
        let second = try await export()
        #expect(first == second)
        #expect(first.count == mix.events.count)
        let objects = try first.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(Set(objects.compactMap { $0["id"] as? String }) == Set(mix.events.map(\.id)))
        #expect(objects.allSatisfy { $0["specversion"] as? String == "1.0" && $0["type"] as? String == UsageCloudEvents.type })
        let billable = objects.compactMap { ($0["data"] as? [String: Any])?["billable_signatures"] as? Int }.reduce(0, +)
        #expect(billable == GeneratedMix.tenants.map { mix.counts(tenant: $0).billed }.reduce(0, +))
        #expect(!first.joined().contains("answer"))
        await t.close()
    }
}

@Suite("Invoice arithmetic and the canonical form")
struct InvoiceArithmeticTests {
    @Test("included, overage and fee lines are exact; only the total is rounded, half up")
    func pricing() {
        let plan = TenantPlan(currency: "EUR", monthlyFee: Decimal(string: "49.90")!, includedSignatures: 1000,
                              pricePerSignature: Decimal(string: "0.01")!, overagePrice: Decimal(string: "0.045")!)
        let inv = MonthlyInvoice.price(tenant: "a", month: "2027-01", billedSignatures: 1003, plan: plan)
        #expect(inv.lines.map(\.quantity) == [1, 1000, 3])
        #expect(inv.lines.map { Money.text($0.amount, currency: "EUR") } == ["49.90", "10.00", "0.135"])
        #expect(inv.exactTotal == Decimal(string: "60.035"))
        #expect(Money.text(inv.total, currency: "EUR") == "60.04")
        let under = MonthlyInvoice.price(tenant: "a", month: "2027-01", billedSignatures: 10, plan: plan)
        #expect(under.lines.map(\.quantity) == [1, 10, 0])
        #expect(Money.text(under.total, currency: "EUR") == "50.00")
        // Many tiny prices: no drift, whatever the count.
        let tiny = TenantPlan(currency: "USD", pricePerSignature: Decimal(string: "0.000001")!, overagePrice: Decimal(string: "0.000001")!)
        #expect(MonthlyInvoice.price(tenant: "t", month: "m", billedSignatures: 1_234_567, plan: tiny).exactTotal
                == Decimal(string: "1.234567"))
        #expect(Money.text(Money.round(Decimal(string: "2.5")!, currency: "JPY"), currency: "JPY") == "3")
        #expect(Money.text(Decimal(string: "1.2345")!, currency: "KWD") == "1.2345")
    }

    @Test("calendar months are UTC and cover the period")
    func months() {
        let m = CalendarMonth.covering(from: GeneratedMix.january.addingTimeInterval(40 * 86400), to: GeneratedMix.march)
        #expect(m.map(\.name) == ["2027-02"])
        let y = CalendarMonth.covering(from: Date(timeIntervalSince1970: 1_796_083_200), to: GeneratedMix.february)  // 2026-12-01
        #expect(y.map(\.name) == ["2026-12", "2027-01"])
    }

    @Test("dates: days and ISO 8601 times are accepted, impossible ones refused")
    func dates() {
        #expect(UsageReport.parseDate("2027-01-01") == GeneratedMix.january)
        #expect(UsageReport.parseDate("2027-01-01T00:00:00Z") == GeneratedMix.january)
        for bad in ["2027-02-30", "2027-13-01", "yesterday", "", "2027-1-1", "'; DROP TABLE"] {
            #expect(UsageReport.parseDate(bad) == nil, "\(bad)")
        }
    }

    @Test("the fast canonical form hashes exactly like the JSONValue form it replaced")
    func canonicalForm() {
        var rng = SplitMix(seed: 7)
        let odd = ["", "plain", "quote\"back\\slash", "tab\tnew\nline\r", "\u{1}ctl", "ümlaut €", "🙂"]
        for n in 0..<300 {
            func pick() -> String? { rng.next() % 3 == 0 ? nil : odd[Int(rng.next() % UInt64(odd.count))] }
            let e = UsageEvent(id: "id-\(n)", time: Date(timeIntervalSince1970: Double(rng.next() % 2_000_000_000)),
                               tenantID: odd[n % odd.count], clientID: pick() ?? "c", credentialID: pick(), upstream: pick(),
                               operation: "signatures/signHash", signatures: Int(rng.next() % 1000), signAlgorithm: pick(),
                               hashAlgorithm: pick(), outcome: [.ok, .denied, .failed][n % 3], stage: pick(), reason: pick(),
                               latencyMicros: Int(rng.next() % 10_000_000), requestID: pick() ?? "r", evidence: pick())
            let previous = Data((0..<32).map { _ in UInt8(rng.next() & 0xff) })
            let seq = Int64(rng.next() % 1_000_000_000), ms = Int64(rng.next() % 2_000_000_000_000)
            #expect(LedgerChain.link(previous: previous, seq: seq, event: e, timeMs: ms)
                    == referenceLink(previous: previous, seq: seq, event: e, timeMs: ms))
        }
    }

    /// The link as it was computed before the writer was made faster: stored ledgers must verify.
    func referenceLink(previous: Data, seq: Int64, event e: UsageEvent, timeMs: Int64) -> Data {
        var fields: [String: JSONValue] = [
            "seq": .number(Double(seq)), "id": .string(e.id), "time_ms": .number(Double(timeMs)),
            "tenant": .string(e.tenantID), "client": .string(e.clientID), "operation": .string(e.operation),
            "signatures": .int(e.signatures), "outcome": .string(e.outcome.rawValue),
            "latency_us": .int(e.latencyMicros), "request_id": .string(e.requestID),
        ]
        for (k, v) in [("credential", e.credentialID), ("upstream", e.upstream), ("sign_algo", e.signAlgorithm),
                       ("hash_algo", e.hashAlgorithm), ("stage", e.stage), ("reason", e.reason), ("evidence", e.evidence)] {
            if let v { fields[k] = .string(v) }
        }
        var h = SHA256()
        h.update(data: previous)
        h.update(data: JSONValue.object(fields).serialized())
        return Data(h.finalize())
    }
}

/// Balanced tags, quoted attributes, no stray `<` or `&`: enough to know the page is
/// well-formed markup (the e2e suite also parses it with an XML parser).
func wellFormed(_ html: String) throws -> Bool {
    var stack = [String]()
    var rest = Substring(html)
    let void: Set<String> = ["meta", "br", "hr", "img", "input", "link"]
    while let open = rest.firstIndex(of: "<") {
        let text = rest[..<open]
        if text.contains(">") { return false }
        if let amp = text.range(of: "&"), !text[amp.lowerBound...].hasPrefix("&amp;") && !text[amp.lowerBound...].hasPrefix("&lt;")
            && !text[amp.lowerBound...].hasPrefix("&gt;") && !text[amp.lowerBound...].hasPrefix("&quot;")
            && !text[amp.lowerBound...].hasPrefix("&#39;") { return false }
        guard let close = rest[open...].firstIndex(of: ">") else { return false }
        let tag = rest[rest.index(after: open)..<close]
        rest = rest[rest.index(after: close)...]
        if tag.hasPrefix("!") { continue }
        if tag.hasPrefix("/") {
            guard stack.popLast() == String(tag.dropFirst()) else { return false }
            continue
        }
        let name = String(tag.prefix { $0.isLetter || $0.isNumber })
        if tag.hasSuffix("/") { continue }
        if void.contains(name) { return false }  // must be self-closed to be XML too
        stack.append(name)
    }
    return stack.isEmpty
}
