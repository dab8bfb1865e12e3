import CSC
import Foundation
import GatewayCore

/// `oauth2/token` and `oauth2/revoke`: form-encoded, client authenticated by Basic
/// (client_secret_basic) or by body fields (client_secret_post).
extension FrontDoor {
    public func handleOAuth(path: String, authorization: String?, body: Data, context: OperationContext) async -> FrontDoorResponse {
        do {
            let form = try Self.parseForm(body)
            switch path {
            case "token":
                let client = try authenticateOAuthClient(form, authorization: authorization)
                guard let grant = form["grant_type"], !grant.isEmpty else {
                    throw CSCError.invalidRequest("Missing parameter grant_type")
                }
                let t = try await gateway.token(grantType: grant, client: client, refreshToken: form["refresh_token"], logger: context.logger)
                var o = JSONObject(["access_token": .string(t.accessToken), "token_type": .string("Bearer"),
                                    "expires_in": .int(t.expiresIn)])
                if let r = t.refreshToken { o["refresh_token"] = .string(r) }
                // RFC 6749 §5.1: token responses must not be cached.
                return FrontDoorResponse(json: o, headers: ["Cache-Control": "no-store", "Pragma": "no-cache"])
            case "revoke":
                let client = try authenticateOAuthClient(form, authorization: authorization)
                guard let token = form["token"], !token.isEmpty else { throw CSCError.invalidRequest("Missing parameter token") }
                try await gateway.revoke(RevokeRequest(token: token, tokenTypeHint: form["token_type_hint"]), by: client.client.id, logger: context.logger)
                return FrontDoorResponse(status: 204)
            case "authorize", "pushed_authorize":
                throw CSCError.notImplemented("oauth2/\(path) is not offered: use grant_type client_credentials")
            default:
                throw CSCError.unknownMethod("oauth2/\(path)")
            }
        } catch let error as CSCError {
            return FrontDoorResponse(error)
        } catch {
            return FrontDoorResponse(.serverError(requestID: context.requestID))
        }
    }

    func authenticateOAuthClient(_ form: [String: String], authorization: String?) throws -> TenantDirectory.ClientEntry {
        let failure = CSCError.invalidClient()
        if authorization != nil {
            guard let basic = try? basicCredentials(authorization, percentEncoded: true) else { throw failure }
            if form["client_secret"] != nil { throw CSCError.invalidRequest("Use one client authentication method, not two") }
            return try gateway.authenticateClient(id: basic.id, secret: basic.secret, failure: failure)
        }
        guard let id = form["client_id"], let secret = form["client_secret"] else { throw failure }
        return try gateway.authenticateClient(id: id, secret: secret, failure: failure)
    }

    static func parseForm(_ body: Data) throws -> [String: String] {
        guard let text = String(data: body, encoding: .utf8) else {
            throw CSCError.invalidRequest("The request body must be application/x-www-form-urlencoded")
        }
        var out = [String: String]()
        for pair in text.split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) throws -> String {
                guard let d = s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
                    throw CSCError.invalidRequest("The request body is not valid form encoding")
                }
                return d
            }
            let key = try decode(kv[0])
            if out[key] != nil { throw CSCError.invalidRequest("Parameter \(key) is repeated") }
            out[key] = kv.count > 1 ? try decode(kv[1]) : ""
        }
        return out
    }
}
