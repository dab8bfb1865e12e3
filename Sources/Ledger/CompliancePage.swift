import Crypto
import Foundation
import GatewayCore

/// The HTML report: one self-contained page (inline CSS and SVG, no script, no external
/// reference) a compliance officer can read offline or attach to an audit file. Every text
/// that came from configuration, clients or the ledger is escaped, and the markup is also
/// well-formed XML (quoted attributes, closed elements), so archiving tools can parse it.
public enum CompliancePage {
    /// Builds the page for `statement`, running the verifier over each tenant's chain (the
    /// whole chain: a link can only be trusted from the first event on).
    public static func make(_ store: any LedgerStore, statement: UsageStatement,
                            publicKey: Curve25519.Signing.PublicKey?, generated: Date = Date()) async throws -> String {
        var body = ""
        let iso = ISO8601DateFormatter()
        let tenants = statement.sections.map(\.report.tenant)
        body += "<h1>Usage and compliance report</h1>\n"
        body += "<p class=\"meta\">Tenant\(tenants.count > 1 ? "s" : "") <b>\(tenants.map(escape).joined(separator: ", "))</b>"
        body += " · period \(escape(iso.string(from: statement.from))) to \(escape(iso.string(from: statement.to))) (end excluded)"
        body += " · generated \(escape(iso.string(from: generated))) · grouped by \(escape(statement.grouping.rawValue))</p>\n"
        for section in statement.sections {
            body += try await sectionHTML(store, section, statement: statement, publicKey: publicKey)
        }
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8"/>
            <title>cscgate usage report: \(escape(tenants.joined(separator: ", ")))</title>
            <style>\(style)</style>
            </head>
            <body>
            \(body)</body>
            </html>

            """
    }

    static let style = """
        body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#1b1f24;padding:0 1em}
        h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #1b1f24;padding-bottom:.2em;margin-top:2em}
        h3{margin-top:1.4em}.meta{color:#555}
        table{border-collapse:collapse;margin:.5em 0 1em;min-width:50%}
        th,td{border:1px solid #c8ccd1;padding:.25em .6em;text-align:left}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
        th{background:#f0f2f4}tr.total td{font-weight:bold;background:#f7f8f9}
        .ok{color:#1a7f37;font-weight:bold}.bad{color:#b3261e;font-weight:bold}
        .legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;vertical-align:middle}
        svg text{font:11px sans-serif;fill:#333}
        """

    static func sectionHTML(_ store: any LedgerStore, _ s: UsageStatement.Section, statement: UsageStatement,
                            publicKey: Curve25519.Signing.PublicKey?) async throws -> String {
        let tenant = s.report.tenant
        var h = "<section>\n<h2>Tenant \(escape(tenant))</h2>\n"

        // Verification first: the numbers below are only worth what the ledger is.
        let verification = try await LedgerVerifier.verify(store, publicKey: publicKey, tenant: tenant)
        let checkpoints = try await store.checkpoints(tenant: tenant)
        let fromMs = LedgerChain.timeMs(statement.from), toMs = LedgerChain.timeMs(statement.to)
        let inPeriod = checkpoints.filter { $0.timeMs >= fromMs && $0.timeMs < toMs }
        h += "<h3>Ledger verification</h3>\n"
        let events = verification.events[tenant] ?? 0
        if verification.isIntact {
            h += "<p class=\"ok\">Intact: \(events) events re-hashed from the first one, "
            h += "\(verification.checkpoints[tenant] ?? 0) signed checkpoints verified"
            h += publicKey == nil ? " (signatures not checked: no checkpoint key)" : " against the gateway's key"
            h += ".</p>\n"
        } else {
            h += "<p class=\"bad\">Tampered: \(verification.problems.count) break\(verification.problems.count == 1 ? "" : "s") "
            h += "in \(events) events. The figures below may not be trustworthy.</p>\n"
            h += "<table><tr><th class=\"n\">seq</th><th>event</th><th>problem</th></tr>\n"
            for p in verification.problems.prefix(200) {
                h += "<tr><td class=\"n\">\(p.seq.map(String.init) ?? "-")</td><td>\(escape(p.eventID ?? "-"))</td>"
                h += "<td>\(escape(p.message))</td></tr>\n"
            }
            h += "</table>\n"
        }
        h += "<p>Signed checkpoints made in this period: \(inPeriod.count)"
        if let first = inPeriod.first, let last = inPeriod.last {
            h += " (seq \(first.seq) to \(last.seq), key \(escape(last.keyID)))"
        }
        h += ".</p>\n"

        // Totals and the requested grouping.
        let t = s.report.total
        h += "<h3>Totals</h3>\n<table><tr><th class=\"n\">operations</th><th class=\"n\">ok</th><th class=\"n\">denied</th>"
        h += "<th class=\"n\">failed</th><th class=\"n\">billed signatures</th></tr>\n"
        h += "<tr><td class=\"n\">\(t.operations)</td><td class=\"n\">\(t.ok)</td><td class=\"n\">\(t.denied)</td>"
        h += "<td class=\"n\">\(t.failed)</td><td class=\"n\">\(t.billedSignatures)</td></tr></table>\n"
        h += "<h3>By \(escape(statement.grouping.rawValue))</h3>\n" + linesTable(s.report, keyName: statement.grouping.rawValue)

        // Signatures over time by upstream.
        let byUpstream = try await store.usageCells(tenant: tenant, from: statement.from, to: statement.to, grouping: .upstream,
                                                  byDay: true)
        h += "<h3>Billed signatures per day, by upstream</h3>\n" + chart(byUpstream, from: statement.from, to: statement.to)
        let upstreamReport = UsageReport(tenant: tenant, from: statement.from, to: statement.to, grouping: .upstream,
                                         cells: byUpstream)
        h += linesTable(upstreamReport, keyName: "upstream")

        // Denials and failures by reason.
        let byReason = try await store.usageCells(tenant: tenant, from: statement.from, to: statement.to, grouping: .reason,
                                                byDay: false)
        var reasons = UsageReport(tenant: tenant, from: statement.from, to: statement.to, grouping: .reason, cells: byReason)
        reasons.lines = reasons.lines.filter { $0.denied + $0.failed > 0 }
            .sorted { ($0.denied + $0.failed, $1.key) > ($1.denied + $1.failed, $0.key) }
        h += "<h3>Denials and failures by stage and reason</h3>\n"
        if reasons.lines.isEmpty {
            h += "<p>None in this period.</p>\n"
        } else {
            h += "<table><tr><th>stage: reason</th><th class=\"n\">denied</th><th class=\"n\">failed</th></tr>\n"
            for l in reasons.lines {
                h += "<tr><td>\(escape(l.key))</td><td class=\"n\">\(l.denied)</td><td class=\"n\">\(l.failed)</td></tr>\n"
            }
            h += "</table>\n"
        }

        // Invoice lines.
        h += "<h3>Invoice</h3>\n"
        if s.plan == nil {
            h += "<p>No plan in the tenant file: usage is recorded but not priced.</p>\n"
        } else {
            h += "<table><tr><th>month</th><th>item</th><th class=\"n\">quantity</th><th class=\"n\">unit price</th>"
            h += "<th class=\"n\">amount</th></tr>\n"
            for m in s.invoices {
                let c = escape(m.currency)
                for l in m.lines {
                    h += "<tr><td>\(escape(m.month))</td><td>\(escape(l.item.rawValue))</td><td class=\"n\">\(l.quantity)</td>"
                    h += "<td class=\"n\">\(escape(Money.text(l.unitPrice, currency: m.currency))) \(c)</td>"
                    h += "<td class=\"n\">\(escape(Money.text(l.amount, currency: m.currency))) \(c)</td></tr>\n"
                }
                h += "<tr class=\"total\"><td>\(escape(m.month))</td><td>total (\(m.billedSignatures) signatures, rounded)</td>"
                h += "<td></td><td></td><td class=\"n\">\(escape(Money.text(m.total, currency: m.currency))) \(c)</td></tr>\n"
            }
            h += "</table>\n<p class=\"meta\">Months are whole calendar months (UTC). Line amounts are exact; "
            h += "each month's total is rounded once, half up, to the currency's minor unit.</p>\n"
        }
        return h + "</section>\n"
    }

    static func linesTable(_ r: UsageReport, keyName: String) -> String {
        var h = "<table><tr><th>\(escape(keyName))</th><th class=\"n\">operations</th><th class=\"n\">ok</th>"
        h += "<th class=\"n\">denied</th><th class=\"n\">failed</th><th class=\"n\">billed signatures</th></tr>\n"
        for l in r.lines + [r.total] {
            h += l.key == "total" && l == r.total ? "<tr class=\"total\">" : "<tr>"
            h += "<td>\(escape(l.key))</td><td class=\"n\">\(l.operations)</td><td class=\"n\">\(l.ok)</td><td class=\"n\">\(l.denied)</td>"
            h += "<td class=\"n\">\(l.failed)</td><td class=\"n\">\(l.billedSignatures)</td></tr>\n"
        }
        return h + "</table>\n"
    }

    static let palette = ["#1f6feb", "#d97706", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#6b7280", "#be185d"]

    /// Stacked bars, one per day of the period, one colour per upstream; each bar segment
    /// carries a `<title>` so a browser shows the figures on hover without any script.
    static func chart(_ cells: [UsageCell], from: Date, to: Date) -> String {
        let firstDay = Int64((from.timeIntervalSince1970 / 86400).rounded(.down))
        let lastDay = max(firstDay, Int64(((to.timeIntervalSince1970 - 0.001) / 86400).rounded(.down)))
        let days = Int(min(lastDay - firstDay + 1, 3660))
        let upstreams = Array(Set(cells.map(\.key))).sorted()
        var perDay = [Int64: [String: Int]]()
        for c in cells where c.billedSignatures > 0 { perDay[c.day, default: [:]][c.key, default: 0] += c.billedSignatures }
        let peak = max(1, perDay.values.map { $0.values.reduce(0, +) }.max() ?? 0)
        let width = 900.0, height = 220.0, left = 50.0, bottom = 30.0, top = 10.0
        let plotW = width - left - 10, plotH = height - bottom - top
        let barW = plotW / Double(max(1, days))
        var svg = "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" "
        svg += "viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"Billed signatures per day by upstream\">\n"
        for i in 0...4 {
            let v = Double(peak) * Double(i) / 4
            let y = top + plotH - plotH * Double(i) / 4
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(width - 10))\" y2=\"\(f(y))\" stroke=\"#e3e6e8\"/>"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(Int(v.rounded()))</text>\n"
        }
        for d in 0..<days {
            let day = firstDay + Int64(d)
            var y = top + plotH
            let x = left + Double(d) * barW
            for (i, u) in upstreams.enumerated() {
                guard let n = perDay[day]?[u], n > 0 else { continue }
                let hgt = plotH * Double(n) / Double(peak)
                y -= hgt
                svg += "<rect x=\"\(f(x + barW * 0.1))\" y=\"\(f(y))\" width=\"\(f(max(0.5, barW * 0.8)))\" height=\"\(f(hgt))\" "
                svg += "fill=\"\(palette[i % palette.count])\"><title>\(escape(UsageReport.dayKey(day))) "
                svg += "\(escape(u)): \(n)</title></rect>\n"
            }
            if days <= 16 || d % max(1, days / 8) == 0 {
                svg += "<text x=\"\(f(x + barW / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\">"
                svg += "\(escape(String(UsageReport.dayKey(day).dropFirst(5))))</text>\n"
            }
        }
        svg += "</svg>\n"
        var legend = "<p class=\"legend\">"
        for (i, u) in upstreams.enumerated() {
            legend += "<span style=\"background:\(palette[i % palette.count])\"></span>\(escape(u))"
        }
        if upstreams.isEmpty { legend += "No signatures in this period." }
        return svg + legend + "</p>\n"
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// Text and attribute values: the five characters that matter in HTML.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                // Control characters have no business in a report.
                if c.value < 0x20 && c != "\n" && c != "\t" { out += "\u{FFFD}" } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }
}
