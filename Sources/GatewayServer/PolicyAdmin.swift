import CSC
import Foundation
import GatewayCore

/// Operator routes for policies and limits: reload, quota events, limit statistics.
extension AdminAPI {
    public mutating func addPolicyRoutes(gateway: Gateway, reload: ConfigurationReload?) {
        if let reload {
            // Applies tenants/ and policies/ now; a change that fails `cscgate check` is refused whole.
            add(.post, "reload") { request in
                Self.outcomeResponse(reload.reload(trigger: "admin:\(request.operatorID)", logger: request.context.logger))
            }
            add(.get, "reload") { _ in
                guard let last = reload.lastOutcome else {
                    return FrontDoorResponse(json: JSONObject(["status": .string("no reload since start")]))
                }
                return Self.outcomeResponse(last, status: 200)
            }
        }
        add(.get, "quota-events") { request in
            let tenant = request.query["tenant"]
            let events = gateway.limits.alerts.events.filter { tenant == nil || $0.tenant == tenant }
            let iso = ISO8601DateFormatter()
            return FrontDoorResponse(json: JSONObject(["events": .array(events.map { e in
                .object(["time": .string(iso.string(from: e.time)), "tenant": .string(e.tenant), "month": .string(e.month),
                         "percent": .int(e.percent), "used": .int(e.used), "quota": .int(e.quota), "refused": .bool(e.refused)])
            })]))
        }
        add(.get, "limits") { _ in
            let s = gateway.limits.statistics
            return FrontDoorResponse(json: JSONObject([
                "counterStore": .string(gateway.limits.store.isRemote ? "postgres" : "memory"),
                "storeFailures": .int(s.storeFailures), "failedOpen": .int(s.failedOpen), "failedClosed": .int(s.failedClosed),
                "refusals": .int(s.refusals),
            ]))
        }
    }

    static func outcomeResponse(_ o: ConfigurationReload.Outcome, status: Int? = nil) -> FrontDoorResponse {
        let iso = ISO8601DateFormatter()
        var fields: [String: JSONValue] = [
            "status": .string(o.applied ? "applied" : "refused"), "trigger": .string(o.trigger),
            "time": .string(iso.string(from: o.time)),
        ]
        if o.applied {
            fields["tenants"] = .int(o.tenants)
            fields["policies"] = .int(o.policies)
        } else {
            fields["error"] = .string("invalid_request")
            fields["error_description"] = .string("The configuration change was refused; the running configuration stays")
            fields["issues"] = .strings(o.issues.map(\.description))
        }
        return FrontDoorResponse(status: status ?? (o.applied ? 200 : 422), json: JSONObject(fields))
    }
}
