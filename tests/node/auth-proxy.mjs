// A loopback proxy that adds one Authorization header to every request and
// changes nothing else (Host, Origin, body and streamed response pass as
// they are). The MCP conformance suite cannot send a credential; Stockade
// serves nothing without one, so the suite reaches it through this.
//
//   node auth-proxy.mjs LISTEN_PORT TARGET_PORT   (the bearer value on stdin)
import http from "node:http";

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
let bearer = "";
process.stdin.on("data", (chunk) => (bearer += chunk));
process.stdin.on("end", () => {
  bearer = bearer.trim();
  const server = http.createServer((req, res) => {
    const upstream = http.request(
      {
        host: "127.0.0.1",
        port: targetPort,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, authorization: `Bearer ${bearer}` },
      },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  server.listen(listenPort, "127.0.0.1", () => console.log("READY"));
});
