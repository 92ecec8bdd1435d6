# What moto's Step Functions interpreter lacks, made as AWS documents it. The gateway starts moto
# through this file: it patches moto, then runs moto's server with the command line it was given.
#
# GetExecutionHistory: moto returns every event, oldest first, whatever is asked. Here
# maxResults (default 100, at most 1000), nextToken, reverseOrder and includeExecutionData
# (false drops the input and output of every event) are honoured.
#
# SendTaskFailure: moto drops the `cause`; here it reaches the task's error output as AWS gives it.
#
# RedriveExecution (moto 5.2.5 answers 500), for a Standard workflow:
#  - only a FAILED, TIMED_OUT or ABORTED execution can be redriven (ExecutionNotRedrivable
#    otherwise, with AWS's reasons), and at most 1000 times;
#  - the execution keeps its ARN, its input and its history; an ExecutionRedriven event follows
#    the old events, and the ids go on from where they stopped;
#  - it resumes at the state that did not succeed (the last top-level state entered and never
#    exited), with the input that state had; the states before it are not run again. A state
#    that failed by reaching a Fail state is that Fail state, so that redrive fails again;
#  - `$$.Execution.RedriveCount` and DescribeExecution's redriveCount, redriveDate and
#    redriveStatus say how often;
#  - the same clientToken twice redrives once.
# Not done here: an inline Map or Parallel that failed, where AWS re-runs only the iterations
# that failed. Such a redrive is refused with LocalAwsUnsupported rather than approximated.
import datetime
import json
import sys
import threading

from moto.core.exceptions import AWSError
from moto.core.responses import ActionResult
from moto.stepfunctions import responses
from moto.stepfunctions.parser.api import ExecutionStatus, HistoryEventType
from moto.stepfunctions.parser.asl.component.common.flow.start_at import StartAt
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.parser.utils import TMP_THREADS

MAX_REDRIVES = 1000
REDRIVE_LOCK = threading.Lock()
REDRIVABLE = (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED)


class ExecutionNotRedrivable(AWSError):
    TYPE = "ExecutionNotRedrivable"
    STATUS = 400


class LocalAwsUnsupported(AWSError):
    TYPE = "LocalAwsUnsupported"
    STATUS = 501


def not_redrivable_reason(execution):
    if execution.sm_type != "STANDARD":
        return "Execution is of type EXPRESS and cannot be redriven."
    status = execution.exec_status
    if status not in REDRIVABLE:
        return f"Execution is {status.value} and cannot be redriven."
    if getattr(execution, "redrive_count", 0) >= MAX_REDRIVES:
        return "Execution has been redriven the maximum number of times."
    return None


def resume_point(execution):
    """The top-level state that did not succeed, its type and the input it was entered with."""
    if execution.exec_worker is None or execution.exec_worker.env is None:
        return None
    top_level = definition_states(execution.state_machine)
    entered = None
    for event in execution.exec_worker.env.event_manager.get_event_history():
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            details = event.get("stateEnteredEventDetails") or {}
            if details.get("name") in top_level:
                entered = (details["name"], details.get("input", "{}"))
        elif kind.endswith("StateExited"):
            details = event.get("stateExitedEventDetails") or {}
            if entered and details.get("name") == entered[0]:
                entered = None
    if entered is None:
        return None
    name, state_input = entered
    return name, top_level[name], state_input


class RedriveWorker(ExecutionWorker):
    """Runs the execution's program again from one state, in the execution's own history."""

    def __init__(self, previous_env, state_name, state_input, redrive_count, **kwargs):
        super().__init__(**kwargs)
        self._previous_env = previous_env
        self._state_name = state_name
        self._state_input = state_input
        self._redrive_count = redrive_count

    def prepare(self):
        """The environment of the redrive: the execution's own history and ids, the state's input."""
        self.env = self._get_evaluation_environment()
        self.env.event_manager = self._previous_env.event_manager
        last_id = len(self.env.event_manager.get_event_history())
        self.env.event_history_context = EventHistoryContext(previous_event_id=last_id)
        self.env.states.context_object.context_object_data["Execution"]["RedriveCount"] = self._redrive_count
        self.env.states.reset(json.loads(self._state_input))

    def start(self):
        self.env.event_manager.add_event(
            context=self.env.event_history_context,
            event_type=HistoryEventType.ExecutionRedriven,
            event_details=EventDetails(executionRedrivenEventDetails={"redriveCount": self._redrive_count}),
        )
        thread = threading.Thread(target=self._resume, daemon=True)
        TMP_THREADS.append(thread)
        thread.start()

    def _resume(self):
        program = self._get_evaluation_entrypoint()
        program.start_at = StartAt(self._state_name)
        program.eval(self.env)
        self._execution_communication.terminated()


def redrive(self, client_token):
    with REDRIVE_LOCK:
        if client_token and client_token == self.redrive_token:
            return self.redrive_date
        reason = not_redrivable_reason(self)
        if reason:
            raise ExecutionNotRedrivable(reason)
        point = resume_point(self)
        if point is None:
            raise ExecutionNotRedrivable("Execution has no state to redrive from.")
        name, kind, state_input = point
        if kind in ("Map", "Parallel"):
            raise LocalAwsUnsupported(
                f"the local AWS does not redrive the failed iterations of {kind} state {name}"
            )
        count = getattr(self, "redrive_count", 0) + 1
        worker = RedriveWorker(
            previous_env=self.exec_worker.env,
            state_name=name,
            state_input=state_input,
            redrive_count=count,
            evaluation_details=self._get_start_execution_worker()._evaluation_details,
            exec_comm=self._get_start_execution_worker_comm(),
            cloud_watch_logging_session=self._cloud_watch_logging_session,
            activity_store=self._activity_store,
        )
        worker.prepare()
        self.redrive_count = count
        self.redrive_date = datetime.datetime.now(tz=datetime.timezone.utc)
        self.redrive_token = client_token
        self.exec_status = ExecutionStatus.RUNNING
        self.stop_date = None
        self.output = None
        self.error = None
        self.cause = None
        self.exec_worker = worker
        worker.start()
        return self.redrive_date


def definition_states(state_machine):
    """The top-level states of the definition the execution runs, by name, with their types."""
    try:
        states = json.loads(state_machine.definition).get("States", {})
    except ValueError:
        return {}
    return {name: state.get("Type") for name, state in states.items()}


def backend_redrive_execution(self, execution_arn, client_token=None):
    return self.describe_execution(execution_arn).redrive(client_token)


Execution.redrive = redrive
Execution.redrive_token = None
Execution.redrive_date = None
Execution.redrive_count = 0
StepFunctionsParserBackend.redrive_execution = backend_redrive_execution


def response_redrive_execution(self):
    backend = self.stepfunction_backend
    if not hasattr(backend, "redrive_execution"):
        raise LocalAwsUnsupported("RedriveExecution needs moto's execute_state_machine")
    date = backend.redrive_execution(self._get_param("executionArn"), self._get_param("clientToken"))
    return ActionResult({"redriveDate": date})


responses.StepFunctionResponse.redrive_execution = response_redrive_execution

_describe_execution = responses.StepFunctionResponse.describe_execution


def describe_execution(self):
    result = _describe_execution(self)
    backend = self.stepfunction_backend
    execution = backend.describe_execution(self._get_param("executionArn"))
    if isinstance(execution, Execution):
        body = result.result if hasattr(result, "result") else None
        if isinstance(body, dict):
            body["redriveCount"] = getattr(execution, "redrive_count", 0)
            if getattr(execution, "redrive_date", None):
                body["redriveDate"] = execution.redrive_date
            reason = not_redrivable_reason(execution)
            body["redriveStatus"] = "NOT_REDRIVABLE" if reason else "REDRIVABLE"
            if reason:
                body["redriveStatusReason"] = reason
    return result


responses.StepFunctionResponse.describe_execution = describe_execution

_get_execution_history = responses.StepFunctionResponse.get_execution_history


class ValidationException(AWSError):
    TYPE = "ValidationException"
    STATUS = 400


class InvalidToken(AWSError):
    TYPE = "InvalidToken"
    STATUS = 400


def get_execution_history(self):
    result = _get_execution_history(self)
    events = list(result.result.get("events", []))
    if self._get_param("reverseOrder"):
        events.reverse()
    if self._get_param("includeExecutionData") is False:
        for event in events:
            for key, details in event.items():
                if key.endswith("EventDetails") and isinstance(details, dict):
                    for field in ("input", "inputDetails", "output", "outputDetails"):
                        details.pop(field, None)
    max_results = self._get_int_param("maxResults") or 100
    if not 0 < max_results <= 1000:
        raise ValidationException(
            f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy "
            "constraint: Member must have value less than or equal to 1000"
        )
    token = self._get_param("nextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise InvalidToken(f"Invalid Token: '{token}'") from None
    page = {"events": events[start : start + max_results]}
    if start + max_results < len(events):
        page["nextToken"] = str(start + max_results)
    return ActionResult(page)


responses.StepFunctionResponse.get_execution_history = get_execution_history


def send_task_failure(self):
    self.stepfunction_backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return ActionResult({})


responses.StepFunctionResponse.send_task_failure = send_task_failure

if __name__ == "__main__":
    from moto.server import main

    sys.argv[0] = "moto_server"
    sys.exit(main())
