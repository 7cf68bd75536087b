"""template.yaml as CloudFormation deploys it: transformed by AWS SAM's own translator
(aws-sam-translator, the library behind the AWS::Serverless-2016-10-31 transform), then
evaluated for given parameter values and stack names by a small evaluator of the
intrinsic functions (Ref, Fn::Sub, Fn::If and the conditions, Fn::FindInMap, Fn::Join, Fn::Select,
Fn::Split, Fn::GetAtt, AWS::NoValue). Names CloudFormation generates (Refs and GetAtts of
resources) evaluate to tokens that hold the stack's name, as generated names do.

No AWS call is made: the managed policy loader is a stub (the template uses no managed
policies) and the region is set here.

Run by scripts/test with .venv's Python:
    python -m unittest discover -s scripts/template_tests
TEMPLATE=<path> checks another template (e.g. `git show HEAD:template.yaml`).
"""

import copy
import json
import logging
import os
import re
import unittest
from functools import lru_cache
from pathlib import Path

# SAM's translator reads the region from boto3 (for AWS::Region and the partition); it
# calls nothing. Missing aws-sam-translator is an error, never a skip.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

# The translator records metrics of its own (with a publisher that sends nothing) and warns
# when they are dropped unpublished.
logging.getLogger("samtranslator.metrics").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(os.environ.get("TEMPLATE", ROOT / "template.yaml"))
README = ROOT / "README.md"

REGION = os.environ["AWS_DEFAULT_REGION"]
ACCOUNT = "123456789012"
STACKS = ("prod", "staging")

# Every optional parameter set (to something other than its default).
ALL_OPTIONAL = {
    "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:ops-alarms",
    "AlarmEmail": "oncall@example.com",
    "SweeperReservedConcurrency": "1",
    "SweepIntervalMinutes": "1",
    "MaxIdleTimeoutSeconds": "86400",
    "MaxAbsoluteTimeoutSeconds": "604800",
    "DeletionProtection": "false",
    "FrontDoor": "FunctionUrl",
    "ClientRoleNames": "web-backend,worker",
    "ApiReservedConcurrency": "10",
    "DirectReads": "Enabled",
}
VARIANTS = {
    "default parameters": {},
    "every optional parameter set": ALL_OPTIONAL,
    "the function URL front door": {"FrontDoor": "FunctionUrl"},
}
FRONT_DOORS = ("HttpApi", "FunctionUrl")

# What the functions emit (Embedded Metric Format): per function, the dimension sets and
# the metrics published under each. Every document's `Function` is the function's name.
EMF = {
    "api": {
        ("Route",): {"Requests", "ClientErrors", "ServerErrors", "Latency"},
        ("Function",): {
            "Requests", "ClientErrors", "ServerErrors", "Latency",
            "SessionsCreated", "SessionsRotated", "ExpiredReads", "UnreadableSessions", "PermanentFaults", "Unavailable",
            "DynamoDbThrottles", "DynamoDbRetries",
        },
        ("Cause",): {"SessionsRevoked"},
    },
    "sweeper": {
        ("Function",): {
            "SweepExamined", "SweepDeleted", "SweepDuration", "SweepComplete",
            "DynamoDbThrottles", "DynamoDbRetries",
        },
    },
    "audit": {
        ("Function",): {
            "AuditRecordsWritten", "AuditDuplicates", "AuditSkipped", "StreamLag",
            "DynamoDbThrottles", "DynamoDbRetries",
        },
    },
}
EMF_METRICS = {m for sets in EMF.values() for names in sets.values() for m in names}
CAUSES = {"logout", "revoke_one", "revoke_all", "evicted"}
BINARY = {"ApiFunction": "api", "SweeperFunction": "sweeper", "AuditFunction": "audit"}

# Physical names: the properties that name a resource in its account and region, for
# every resource type the transformed template has. A type not listed here fails the
# test, so that whoever adds one decides what names it.
PHYSICAL_NAMES = {
    "AWS::ApiGatewayV2::Api": {"Name"},
    "AWS::ApiGatewayV2::Stage": set(),  # StageName is unique within its API only
    "AWS::CloudWatch::Alarm": {"AlarmName"},
    "AWS::CloudWatch::Dashboard": {"DashboardName"},
    "AWS::DynamoDB::Table": {"TableName"},
    "AWS::IAM::ManagedPolicy": {"ManagedPolicyName"},
    "AWS::IAM::Role": {"RoleName"},
    "AWS::KMS::Key": set(),  # aliases are AWS::KMS::Alias resources
    "AWS::Lambda::EventInvokeConfig": set(),  # FunctionName names its function
    "AWS::Lambda::EventSourceMapping": set(),  # likewise
    "AWS::Lambda::Function": {"FunctionName"},
    "AWS::Lambda::Permission": set(),  # likewise
    "AWS::Lambda::Url": set(),  # its host is generated
    "AWS::Logs::LogGroup": {"LogGroupName"},
    "AWS::Scheduler::Schedule": {"Name"},
    "AWS::SNS::Subscription": set(),
    "AWS::SNS::Topic": {"TopicName"},
    "AWS::SQS::Queue": {"QueueName"},
}
# Top-level properties ending in "Name" that name no resource of the account and region.
NOT_PHYSICAL = {
    "MetricName": "names a metric, not a resource",
    "StageName": "unique within its API only (\"$default\")",
    "DisplayName": "a label, not an identifier",
}


class NoValue:
    """AWS::NoValue: the property or list element is removed."""


NO_VALUE = NoValue()


@lru_cache(maxsize=None)
def sam_template():
    return yaml_parse(TEMPLATE.read_text())


class StubPolicyLoader:
    """The template names no managed policies, so none are ever looked up."""

    def load(self):
        return {}


@lru_cache(maxsize=None)
def transformed(params):
    """template.yaml after the SAM transform, as CloudFormation would run it for `params`
    (a tuple of (name, value)), packaged as `sam package` leaves it (code on S3)."""
    template = copy.deepcopy(sam_template())
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://artifacts/{logical_id}.zip"
    return transform(template, dict(params), StubPolicyLoader())


def check_parameter(name, spec, value):
    """Errors CloudFormation would report for `value` of parameter `name` (empty if none)."""
    errors = []
    text = str(value)
    if spec.get("Type") == "Number":
        try:
            number = float(text)
        except ValueError:
            return [f"{name}={text!r} is not a number"]
        if "MinValue" in spec and number < float(spec["MinValue"]):
            errors.append(f"{name}={text} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            errors.append(f"{name}={text} is above MaxValue {spec['MaxValue']}")
        if "AllowedValues" in spec and number not in {float(v) for v in spec["AllowedValues"]}:
            errors.append(f"{name}={text} is not one of AllowedValues")
    else:
        if "AllowedValues" in spec and text not in {str(v) for v in spec["AllowedValues"]}:
            errors.append(f"{name}={text!r} is not one of AllowedValues")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], text):
            errors.append(f"{name}={text!r} does not match AllowedPattern {spec['AllowedPattern']!r}")
        if "MinLength" in spec and len(text) < int(spec["MinLength"]):
            errors.append(f"{name}={text!r} is shorter than MinLength")
        if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
            errors.append(f"{name}={text!r} is longer than MaxLength")
    return errors


class Stack:
    """The transformed template evaluated for one stack name and parameter values."""

    def __init__(self, name, params=None):
        params = dict(params or {})
        declared = sam_template().get("Parameters", {})
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise AssertionError(f"the template has no parameter {', '.join(unknown)}")
        self.name = name
        self.template = transformed(tuple(sorted(params.items())))
        self.parameters = {}
        for pname, spec in declared.items():
            value = params.get(pname, spec.get("Default"))
            if value is None:
                raise AssertionError(f"parameter {pname} has no default and no value")
            errors = check_parameter(pname, spec, value)
            if errors:
                raise AssertionError(f"CloudFormation would refuse the stack: {'; '.join(errors)}")
            self.parameters[pname] = str(value)
        self.pseudo = {
            "AWS::StackName": name,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/id",
        }
        self._conditions = {}
        raw = self.template["Resources"]
        self.kept = {lid: r for lid, r in raw.items() if self.condition_holds(r.get("Condition"))}
        self.resources = {lid: self.evaluate_resource(r) for lid, r in self.kept.items()}
        self.outputs = {
            oname: self.eval(o["Value"])
            for oname, o in self.template.get("Outputs", {}).items()
            if self.condition_holds(o.get("Condition"))
        }

    # Tokens for what CloudFormation generates per stack.
    def ref_token(self, logical_id):
        return f"{self.name}-{logical_id}-generated"

    def getatt_token(self, logical_id, attribute):
        if (self.template["Resources"][logical_id]["Type"], attribute) == ("AWS::Lambda::Url", "FunctionUrl"):
            # As Lambda gives it: https://<url-id>.lambda-url.<region>.on.aws/
            url_id = re.sub(r"[^a-z0-9]", "", f"{self.name}{logical_id}".lower())
            return f"https://{url_id}.lambda-url.{REGION}.on.aws/"
        return f"{self.name}-{logical_id}-generated.{attribute}"

    def evaluate_resource(self, resource):
        out = {"Type": resource["Type"], "Properties": self.eval(resource.get("Properties", {}))}
        return out

    def of_type(self, type_):
        return {lid: r for lid, r in self.resources.items() if r["Type"] == type_}

    def condition_holds(self, name):
        if name is None:
            return True
        if name not in self._conditions:
            conditions = self.template.get("Conditions", {})
            if name not in conditions:
                raise AssertionError(f"no condition {name}")
            self._conditions[name] = bool(self.eval(conditions[name]))
        return self._conditions[name]

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            if sam_template()["Parameters"][name].get("Type") == "CommaDelimitedList":
                return [item.strip() for item in self.parameters[name].split(",")]
            return self.parameters[name]
        if name in self.template["Resources"]:
            if name not in self.kept:
                raise AssertionError(f"Ref to {name}, which this stack does not create")
            return self.ref_token(name)
        raise AssertionError(f"Ref to unknown {name}")

    def getatt(self, logical_id, attribute):
        if logical_id not in self.template["Resources"]:
            raise AssertionError(f"GetAtt of unknown {logical_id}")
        if logical_id not in self.kept:
            raise AssertionError(f"GetAtt of {logical_id}, which this stack does not create")
        return self.getatt_token(logical_id, attribute)

    def sub(self, text, variables):
        def replace(match):
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return str(self.eval(variables[inner]))
            if "." in inner and not inner.startswith("AWS::"):
                logical_id, attribute = inner.split(".", 1)
                return self.getatt(logical_id, attribute)
            value = self.ref(inner)
            if value is NO_VALUE:
                raise AssertionError("AWS::NoValue inside Fn::Sub")
            return str(value)

        return re.sub(r"\$\{([^}]*)\}", replace, text)

    def eval(self, value):
        if isinstance(value, list):
            items = [self.eval(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
                return self.getatt(logical_id, attribute)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, variables)
            if key == "Fn::FindInMap":
                mapping, top, second = (str(self.eval(a)) for a in arg)
                try:
                    return self.template["Mappings"][mapping][top][second]
                except KeyError:
                    raise AssertionError(f"Fn::FindInMap: {mapping} has no {top}.{second}") from None
            if key == "Fn::If":
                name, if_true, if_false = arg
                return self.eval(if_true if self.condition_holds(name) else if_false)
            if key == "Fn::Equals":
                left, right = (self.eval(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.eval(arg[0])
            if key == "Fn::And":
                return all(self.eval(a) for a in arg)
            if key == "Fn::Or":
                return any(self.eval(a) for a in arg)
            if key == "Condition":
                return self.condition_holds(arg)
            if key == "Fn::Join":
                delimiter, items = arg
                return str(delimiter).join(str(i) for i in self.eval(items))
            if key == "Fn::Select":
                index, items = arg
                return self.eval(items)[int(self.eval(index))]
            if key == "Fn::Split":
                delimiter, text = arg
                return str(self.eval(text)).split(delimiter)
            if key.startswith("Fn::"):
                raise AssertionError(f"the evaluator does not know {key}")
        out = {}
        for k, v in value.items():
            evaluated = self.eval(v)
            if evaluated is not NO_VALUE:
                out[k] = evaluated
        return out

    # Conveniences.
    def props(self, logical_id):
        return self.resources[logical_id]["Properties"]

    def alarms(self):
        return self.of_type("AWS::CloudWatch::Alarm")

    def function_env(self, logical_id):
        return self.props(logical_id).get("Environment", {}).get("Variables", {})

    def role_allows(self, role_ref, action, resource):
        """Whether the role (a GetAtt token of its Arn) has an Allow of `action` on `resource`."""
        roles = [lid for lid in self.of_type("AWS::IAM::Role") if self.getatt_token(lid, "Arn") == role_ref]
        assert len(roles) == 1, f"no role of this stack is {role_ref}"
        for policy in self.props(roles[0]).get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                if statement["Effect"] == "Allow" and action in actions and resource in resources:
                    return True
        return False

    def dashboard(self):
        dashboards = self.of_type("AWS::CloudWatch::Dashboard")
        assert len(dashboards) == 1, f"one dashboard, not {sorted(dashboards)}"
        (logical_id, dashboard), = dashboards.items()
        try:
            return logical_id, json.loads(dashboard["Properties"]["DashboardBody"])
        except json.JSONDecodeError as e:
            raise AssertionError(f"{logical_id}'s DashboardBody is not JSON: {e}") from None


@lru_cache(maxsize=None)
def stack(name, params=()):
    return Stack(name, dict(params))


def variant_stacks(params):
    return [stack(name, tuple(sorted(params.items()))) for name in STACKS]


def routes():
    """Route templates the api reports: "METHOD /path" of every route of the HTTP API's
    definition, and "-"."""
    paths = sam_template()["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
    return {f"{method.upper()} {path}" for path, item in paths.items() for method in item} | {"-"}


def emf_error(namespace, stack_, metric, dimensions):
    """Why (metric, dimensions) in `namespace` names nothing the functions emit (None if it does)."""
    expected = f"SessionService/{stack_.name}"
    if namespace != expected:
        return f"{metric}: namespace {namespace!r}, not METRICS_NAMESPACE {expected!r}"
    allowed = {"Route": routes(), "Cause": CAUSES}
    for function, sets in EMF.items():
        for dimension_set, metrics in sets.items():
            if metric not in metrics or set(dimensions) != set(dimension_set):
                continue
            ok = all(
                (value == function if dim == "Function" else value is None or value in allowed[dim])
                for dim, value in dimensions.items()
            )
            if ok:
                return None
    return f"{metric} with dimensions {dimensions} is not emitted by any function"


def custom_metric_of(alarm):
    """(namespace, metric, dimensions) of each metric an alarm reads."""
    p = alarm["Properties"]
    if "MetricName" in p:
        yield p["Namespace"], p["MetricName"], {d["Name"]: d["Value"] for d in p.get("Dimensions", [])}
    for query in p.get("Metrics", []):
        if "MetricStat" in query:
            m = query["MetricStat"]["Metric"]
            yield m["Namespace"], m["MetricName"], {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}


SEARCH = re.compile(
    r"""SEARCH\('\{"(?P<namespace>[^"]+)",(?P<dimensions>[^}]*)\} MetricName="(?P<metric>[A-Za-z0-9]+)"', '[^']+', \d+\)"""
)


def dashboard_metrics(body):
    """(widget title, namespace, metric, {dimension: value or None}) of every metric the
    dashboard's metric widgets show, SEARCH expressions included (their dimensions' values
    are None: any)."""
    found = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        title = widget["properties"]["title"]
        for row in widget["properties"]["metrics"]:
            if len(row) == 1 and isinstance(row[0], dict) and "expression" in row[0]:
                match = SEARCH.fullmatch(row[0]["expression"])
                if not match:
                    raise AssertionError(f"{title}: expression {row[0]['expression']!r} is no SEARCH this test reads")
                dims = {d.strip(): None for d in match["dimensions"].split(",") if d.strip()}
                found.append((title, match["namespace"], match["metric"], dims))
                continue
            fields = [f for f in row if not isinstance(f, dict)]
            if "." in fields:
                raise AssertionError(f"{title}: write metrics out, without the '.' shorthand")
            namespace, metric, *pairs = fields
            if len(pairs) % 2:
                raise AssertionError(f"{title}: {row} has a dimension without a value")
            found.append((title, namespace, metric, dict(zip(pairs[::2], pairs[1::2]))))
    return found


def layout_sketch(body):
    """The dashboard's widgets as a text grid (a character per third of a grid column),
    rows top to bottom; README.md shows it."""
    rows = {}
    for widget in body["widgets"]:
        rows.setdefault(widget["y"], []).append(widget)
    lines = []
    previous = None
    for y in sorted(rows):
        cells = sorted(rows[y], key=lambda w: w["x"])
        edges, x = {0}, 0
        for cell in cells:
            if cell["x"] != x:
                raise AssertionError(f"row {y}: a gap or overlap at column {x}")
            x += cell["width"]
            edges.add(x)
        if x != 24:
            raise AssertionError(f"row {y} is {x} columns wide, not 24")
        boundary = edges | (previous or set())
        lines.append("".join("+" if i % 3 == 0 and i // 3 in boundary else "-" for i in range(73)))
        line = "|"
        for cell in cells:
            title = cell["properties"]["title"]
            space = cell["width"] * 3 - 1
            if len(title) + 2 > space:
                raise AssertionError(f"title {title!r} is too long for a widget {cell['width']} wide")
            line += (" " + title).ljust(space) + "|"
        lines.append(line)
        previous = edges
    lines.append("".join("+" if i % 3 == 0 and i // 3 in previous else "-" for i in range(73)))
    return "\n".join(lines)


class PhysicalNames(unittest.TestCase):
    def test_two_stacks_in_one_account_and_region_share_no_physical_name(self):
        for variant, params in VARIANTS.items():
            with self.subTest(variant):
                first, second = variant_stacks(params)
                failures = []
                for logical_id, resource in first.resources.items():
                    type_ = resource["Type"]
                    if type_ not in PHYSICAL_NAMES:
                        failures.append(f"{type_} ({logical_id}): say which properties name it (PHYSICAL_NAMES)")
                        continue
                    names = PHYSICAL_NAMES[type_] | {
                        key for key in resource["Properties"] if key.endswith("Name") and key not in NOT_PHYSICAL
                    }
                    for key in sorted(names):
                        a = resource["Properties"].get(key)
                        b = second.resources[logical_id]["Properties"].get(key)
                        if (a is not None or b is not None) and a == b:
                            failures.append(
                                f"{logical_id} ({type_}) has {key} {a!r} in both stacks "
                                f"{first.name!r} and {second.name!r}: the second deployment would fail"
                            )
                if failures:
                    self.fail("\n".join(failures))


def intervals():
    """Every SweepIntervalMinutes the template allows."""
    return [int(v) for v in sam_template()["Parameters"]["SweepIntervalMinutes"]["AllowedValues"]]


class Schedule(unittest.TestCase):
    def test_the_sweep_schedule_is_an_aws_rate_expression_for_every_interval(self):
        self.assertLessEqual({1, 2, 5, 60}, set(intervals()))
        for minutes in intervals():
            with self.subTest(SweepIntervalMinutes=minutes):
                s = stack("prod", (("SweepIntervalMinutes", str(minutes)),))
                schedules = s.of_type("AWS::Scheduler::Schedule")
                self.assertEqual(len(schedules), 1, sorted(schedules))
                (schedule,) = schedules.values()
                expression = schedule["Properties"]["ScheduleExpression"]
                want = "rate(1 minute)" if minutes == 1 else f"rate({minutes} minutes)"
                self.assertEqual(expression, want)
                self.assertRegex(expression, r"^rate\((1 minute|[1-9][0-9]* minutes)\)$")

    def test_intervals_are_whole_minutes_up_to_a_day(self):
        spec = sam_template()["Parameters"]["SweepIntervalMinutes"]
        self.assertTrue(all(1 <= m <= 1440 for m in intervals()), intervals())
        # A Number parameter takes decimals unless its values are listed.
        for value in ("2.5", "1.0", "0", "1441"):
            self.assertTrue(check_parameter("SweepIntervalMinutes", spec, value), value)

    def test_the_incomplete_sweep_alarm_sees_a_run_in_every_period_of_its_window(self):
        for minutes in intervals():
            with self.subTest(SweepIntervalMinutes=minutes):
                s = stack("prod", (("SweepIntervalMinutes", str(minutes)),))
                alarm = s.props("SweepIncompleteAlarm")
                period, periods = int(alarm["Period"]), int(alarm["EvaluationPeriods"])
                self.assertEqual(period % 60, 0)
                self.assertGreaterEqual(period, minutes * 60, "each period holds a run")
                self.assertGreaterEqual(period * periods, 3600, "a window of an hour at least")
                self.assertLessEqual(period * periods, 86400, "CloudWatch's longest window")
                self.assertEqual(int(alarm["DatapointsToAlarm"]), periods)


class Concurrency(unittest.TestCase):
    def test_no_function_reserves_concurrency_by_default(self):
        for s in variant_stacks({}):
            for logical_id, function in s.of_type("AWS::Lambda::Function").items():
                self.assertNotIn("ReservedConcurrentExecutions", function["Properties"], logical_id)

    def test_reserved_concurrency_takes_whole_numbers_only(self):
        spec = sam_template()["Parameters"]["SweeperReservedConcurrency"]
        for value in ("1.5", "-1"):
            self.assertTrue(check_parameter("SweeperReservedConcurrency", spec, value), value)

    def test_the_sweepers_reserved_concurrency_is_opt_in(self):
        s = stack("prod", (("SweeperReservedConcurrency", "1"),))
        self.assertEqual(int(s.props("SweeperFunction")["ReservedConcurrentExecutions"]), 1)
        for logical_id in ("ApiFunction", "AuditFunction"):
            self.assertNotIn("ReservedConcurrentExecutions", s.props(logical_id), logical_id)


class FrontDoors(unittest.TestCase):
    """FrontDoor: exactly one way in, IAM-authorized, and only ApiClientPolicy may use it."""

    API_GATEWAY_TYPES = ("AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage", "AWS::ApiGatewayV2::Route",
                         "AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Authorizer")

    def stacks(self, door, **more):
        return variant_stacks({"FrontDoor": door, **more})

    def api_gateway(self, s):
        return {lid for t in self.API_GATEWAY_TYPES for lid in s.of_type(t)}

    def permissions_on_the_api_function(self, s):
        function = {s.ref_token("ApiFunction"), s.getatt_token("ApiFunction", "Arn")}
        return [p["Properties"] for p in s.of_type("AWS::Lambda::Permission").values()
                if p["Properties"]["FunctionName"] in function]

    def test_the_default_front_door_is_the_http_api(self):
        self.assertEqual(sam_template()["Parameters"]["FrontDoor"]["Default"], "HttpApi")
        self.assertEqual(set(sam_template()["Parameters"]["FrontDoor"]["AllowedValues"]), set(FRONT_DOORS))

    def test_the_http_api_front_door_is_an_iam_authorized_http_api_and_no_function_url(self):
        for s in self.stacks("HttpApi"):
            self.assertEqual(s.of_type("AWS::Lambda::Url"), {})
            self.assertEqual(sorted(s.of_type("AWS::ApiGatewayV2::Api")), ["HttpApi"])
            body = s.props("HttpApi")["Body"]
            schemes = body["components"]["securitySchemes"]
            self.assertEqual(schemes["AWS_IAM"]["x-amazon-apigateway-authtype"], "awsSigv4")
            operations = [(path, method, op) for path, item in body["paths"].items() for method, op in item.items()]
            self.assertEqual({f"{m.upper()} {p}" for p, m, _ in operations}, routes() - {"-"})
            for path, method, op in operations:
                self.assertEqual(op.get("security"), [{"AWS_IAM": []}], f"{method} {path} is IAM-authorized")
                integration = op["x-amazon-apigateway-integration"]
                self.assertEqual((integration["type"], integration["payloadFormatVersion"]), ("aws_proxy", "2.0"))
                self.assertIn(s.getatt_token("ApiFunction", "Arn"), integration["uri"])
            self.assertEqual(len(s.of_type("AWS::ApiGatewayV2::Stage")), 1)
            # API Gateway, for this API only, is the one principal the function lets invoke it.
            self.assertEqual(self.permissions_on_the_api_function(s), [{
                "Action": "lambda:InvokeFunction",
                "FunctionName": s.ref_token("ApiFunction"),
                "Principal": "apigateway.amazonaws.com",
                "SourceAccount": ACCOUNT,
                "SourceArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{s.ref_token('HttpApi')}/*",
            }])
            self.assertEqual(s.outputs["ApiUrl"], f"https://{s.ref_token('HttpApi')}.execute-api.{REGION}.amazonaws.com")

    def test_the_function_url_front_door_is_an_iam_url_and_no_api_gateway(self):
        for s in self.stacks("FunctionUrl"):
            self.assertEqual(self.api_gateway(s), set())
            self.assertEqual(s.of_type("AWS::Logs::LogGroup").keys() & {"ApiAccessLogGroup"}, set())
            urls = s.of_type("AWS::Lambda::Url")
            self.assertEqual(len(urls), 1, sorted(urls))
            (url_id, url), = urls.items()
            self.assertEqual(url["Properties"], {
                "TargetFunctionArn": s.getatt_token("ApiFunction", "Arn"),
                "AuthType": "AWS_IAM",
            }, "IAM-authorized, the unqualified function, buffered, no CORS")
            # No resource policy on the function at all: only identity policies (ApiClientPolicy)
            # of this account can grant calling it.
            self.assertEqual(self.permissions_on_the_api_function(s), [])
            host = s.getatt_token(url_id, "FunctionUrl").split("/")[2]
            self.assertEqual(s.outputs["ApiUrl"], f"https://{host}")
            self.assertRegex(s.outputs["ApiUrl"], rf"^https://[a-z0-9]+\.lambda-url\.{REGION}\.on\.aws$")

    def client_policy(self, s):
        policies = s.of_type("AWS::IAM::ManagedPolicy")
        self.assertEqual(sorted(policies), ["ApiClientPolicy"])
        self.assertEqual(s.outputs["ApiClientPolicyArn"], s.ref_token("ApiClientPolicy"))
        return s.props("ApiClientPolicy")

    def test_the_client_policy_allows_calling_the_front_door_in_use_and_nothing_else(self):
        function_arn = lambda s: s.getatt_token("ApiFunction", "Arn")  # noqa: E731
        expected = {
            "HttpApi": lambda s: [{
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{s.ref_token('HttpApi')}/*",
            }],
            "FunctionUrl": lambda s: [
                {
                    "Effect": "Allow",
                    "Action": "lambda:InvokeFunctionUrl",
                    "Resource": function_arn(s),
                    "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
                },
                {
                    "Effect": "Allow",
                    "Action": "lambda:InvokeFunction",
                    "Resource": function_arn(s),
                    "Condition": {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
                },
            ],
        }
        direct_reads = lambda s: {  # noqa: E731
            "Effect": "Allow",
            "Action": "dynamodb:GetItem",
            "Resource": s.getatt_token("SessionsTable", "Arn"),
        }
        for door, statements in expected.items():
            for s in self.stacks(door):
                self.assertEqual(self.client_policy(s)["PolicyDocument"]["Statement"], statements(s), door)
            for s in self.stacks(door, DirectReads="Enabled"):
                self.assertEqual(
                    self.client_policy(s)["PolicyDocument"]["Statement"], statements(s) + [direct_reads(s)], door
                )

    def test_direct_reads_grant_getitem_on_the_sessions_table_to_the_client_roles_and_nothing_more(self):
        reads = {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:*", "*"}
        table = lambda s: s.getatt_token("SessionsTable", "Arn")  # noqa: E731
        for door in FRONT_DOORS:
            for s in self.stacks(door):
                actions = [st["Action"] for st in self.client_policy(s)["PolicyDocument"]["Statement"]]
                self.assertFalse(reads & set(actions), f"{door}: direct reads are opt-in")
            for s in self.stacks(door, DirectReads="Enabled", ClientRoleNames="web-backend"):
                policy = self.client_policy(s)
                self.assertEqual(policy["Roles"], ["web-backend"])
                granted = [st for st in policy["PolicyDocument"]["Statement"] if str(st["Action"]).startswith("dynamodb:")]
                # One action on the table itself: no index (table/index/*), no stream, no scan.
                self.assertEqual(granted, [{"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": table(s)}])
                self.assertEqual(s.outputs["SessionsTableName"], s.ref_token("SessionsTable"))
        spec = sam_template()["Parameters"]["DirectReads"]
        self.assertEqual(spec["Default"], "Disabled")
        for value in ("true", "enabled", ""):
            self.assertTrue(check_parameter("DirectReads", spec, value), value)

    def test_the_client_policy_is_attached_to_the_named_roles_and_no_one_else(self):
        for door in FRONT_DOORS:
            for s in self.stacks(door):
                self.assertNotIn("Roles", self.client_policy(s), "attached to nobody unless told")
                for key in ("Users", "Groups"):
                    self.assertNotIn(key, self.client_policy(s))
            for s in self.stacks(door, ClientRoleNames="web-backend,worker"):
                self.assertEqual(self.client_policy(s)["Roles"], ["web-backend", "worker"])
                self.assertNotIn("Users", self.client_policy(s))
                self.assertNotIn("Groups", self.client_policy(s))

    def test_no_role_of_the_stack_may_call_the_api(self):
        calling = {"execute-api:Invoke", "lambda:InvokeFunctionUrl", "lambda:InvokeFunction", "lambda:*", "*"}
        for door in FRONT_DOORS:
            for s in self.stacks(door):
                for logical_id, role in s.of_type("AWS::IAM::Role").items():
                    for policy in role["Properties"].get("Policies", []):
                        for statement in policy["PolicyDocument"]["Statement"]:
                            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                            api = {"*", s.getatt_token("ApiFunction", "Arn")} | {
                                r for r in resources if "execute-api" in str(r)
                            }
                            self.assertFalse(
                                calling & set(actions) and api & set(resources),
                                f"{door}: {logical_id} may call the API",
                            )
                    self.assertEqual(role["Properties"].get("ManagedPolicyArns", []), [], logical_id)

    def test_lambdas_own_lines_are_kept_at_warn_only_and_metric_documents_always(self):
        for door in FRONT_DOORS:
            for s in self.stacks(door):
                for logical_id, binary in BINARY.items():
                    logging_config = s.props(logical_id)["LoggingConfig"]
                    self.assertEqual(logging_config["LogGroup"], s.ref_token(binary.capitalize() + "LogGroup"))
                    # START, END and REPORT are INFO lines of the platform; EMF documents carry no
                    # level, so Lambda files them at INFO: the application level must let INFO through.
                    self.assertEqual(
                        {k: v for k, v in logging_config.items() if k != "LogGroup"},
                        {"LogFormat": "JSON", "SystemLogLevel": "WARN", "ApplicationLogLevel": "INFO"},
                        logical_id,
                    )
                self.assertEqual(s.props("ApiFunction")["Environment"]["Variables"]["RUST_LOG"], "info")
                self.assertEqual(s.props("ApiFunction")["Environment"]["Variables"]["METRICS_BY_MINUTE"], "true")
            for s in self.stacks(door, ApiLogLevel="warn"):
                self.assertEqual(s.props("ApiFunction")["Environment"]["Variables"]["RUST_LOG"], "warn")
        spec = sam_template()["Parameters"]["ApiLogLevel"]
        for value in ("debug", "trace", "WARN", "api=debug"):
            self.assertTrue(check_parameter("ApiLogLevel", spec, value), value)

    def test_the_apis_reserved_concurrency_is_opt_in_and_a_whole_number(self):
        for door in FRONT_DOORS:
            s = stack("prod", (("ApiReservedConcurrency", "25"), ("FrontDoor", door)))
            self.assertEqual(s.props("ApiFunction")["ReservedConcurrentExecutions"], "25")
        spec = sam_template()["Parameters"]["ApiReservedConcurrency"]
        for value in ("1.5", "-1", "01", "", "ten"):
            self.assertTrue(check_parameter("ApiReservedConcurrency", spec, value), value)
        for value in ("0", "1", "1000"):
            self.assertEqual(check_parameter("ApiReservedConcurrency", spec, value), [], value)


class Alarms(unittest.TestCase):
    def assert_every_alarm_notifies(self, s, topic):
        alarms = s.alarms()
        self.assertTrue(alarms, "the stack has alarms")
        for logical_id, alarm in alarms.items():
            p = alarm["Properties"]
            self.assertEqual(p.get("AlarmActions"), [topic], f"{logical_id}'s AlarmActions")
            self.assertEqual(p.get("OKActions"), [topic], f"{logical_id}'s OKActions")
            self.assertIn(p.get("ActionsEnabled", True), (True, "true"), logical_id)
            self.assertIn(
                p.get("TreatMissingData"), ("notBreaching", "breaching", "ignore", "missing"),
                f"{logical_id} says how missing data counts",
            )

    def test_every_alarm_notifies_the_stacks_own_encrypted_topic_by_default(self):
        for s in variant_stacks({}):
            topics = s.of_type("AWS::SNS::Topic")
            self.assertEqual(len(topics), 1, f"one topic of the stack's own: {sorted(topics)}")
            (topic_id, topic), = topics.items()
            self.assert_every_alarm_notifies(s, s.ref_token(topic_id))
            self.assertEqual(s.outputs.get("AlarmTopicArn"), s.ref_token(topic_id))
            # CloudWatch cannot use the AWS managed key (alias/aws/sns): the topic needs a
            # customer managed key whose policy lets CloudWatch use it.
            key_ref = topic["Properties"].get("KmsMasterKeyId")
            keys = {lid for lid in s.of_type("AWS::KMS::Key") if key_ref in (s.ref_token(lid), s.getatt_token(lid, "Arn"))}
            self.assertEqual(len(keys), 1, f"the topic is encrypted with a key of the stack's own, not {key_ref!r}")
            key = s.props(keys.pop())
            self.assertIn(key.get("EnableKeyRotation"), (True, "true"), "the key rotates")
            granted = set()
            for statement in key["KeyPolicy"]["Statement"]:
                if statement.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com":
                    granted |= set(statement["Action"])
            self.assertLessEqual({"kms:Decrypt", "kms:GenerateDataKey*"}, granted, "CloudWatch may use the key")

    def test_every_alarm_notifies_a_given_topic_and_no_topic_is_created(self):
        arn = ALL_OPTIONAL["AlarmTopicArn"]
        for s in variant_stacks({"AlarmTopicArn": arn}):
            self.assertEqual(s.of_type("AWS::SNS::Topic"), {})
            self.assertEqual(s.of_type("AWS::KMS::Key"), {})
            self.assert_every_alarm_notifies(s, arn)
            self.assertEqual(s.outputs.get("AlarmTopicArn"), arn)

    def test_an_alarm_email_makes_exactly_one_email_subscription_to_the_topic_in_use(self):
        email = ALL_OPTIONAL["AlarmEmail"]
        for params in ({"AlarmEmail": email}, {"AlarmEmail": email, "AlarmTopicArn": ALL_OPTIONAL["AlarmTopicArn"]}):
            s = stack("prod", tuple(sorted(params.items())))
            subscriptions = list(s.of_type("AWS::SNS::Subscription").values())
            self.assertEqual(len(subscriptions), 1, params)
            p = subscriptions[0]["Properties"]
            self.assertEqual((p["Protocol"], p["Endpoint"]), ("email", email))
            self.assertEqual(p["TopicArn"], s.outputs["AlarmTopicArn"])

    def test_no_subscription_without_an_alarm_email(self):
        for params in ({}, {"AlarmTopicArn": ALL_OPTIONAL["AlarmTopicArn"]}):
            s = stack("prod", tuple(sorted(params.items())))
            self.assertEqual(s.of_type("AWS::SNS::Subscription"), {}, params)

    def test_alarms_on_the_functions_metrics_name_what_they_emit(self):
        for s in variant_stacks({}):
            for logical_id, alarm in s.alarms().items():
                for namespace, metric, dims in custom_metric_of(alarm):
                    if namespace.startswith("AWS/"):
                        continue
                    self.assertIsNone(emf_error(namespace, s, metric, dims), logical_id)

    def test_operators_are_paged_for_faults_unavailability_and_an_outrun_sweeper(self):
        s = stack("prod")
        watched = {metric for a in s.alarms().values() for _, metric, _ in custom_metric_of(a)}
        self.assertLessEqual({"PermanentFaults", "Unavailable", "SweepComplete"}, watched)


class SweeperFailures(unittest.TestCase):
    def test_failed_sweeps_reach_a_queue_the_sweeper_may_send_to_and_an_alarm_watches(self):
        for s in variant_stacks({}):
            function = s.ref_token("SweeperFunction")
            configs = [c["Properties"] for c in s.of_type("AWS::Lambda::EventInvokeConfig").values() if c["Properties"]["FunctionName"] == function]
            self.assertEqual(len(configs), 1, "the sweeper has an EventInvokeConfig")
            config = configs[0]
            self.assertIn(int(config.get("MaximumRetryAttempts", -1)), range(0, 3), "bounded retries")
            self.assertIn(int(config.get("MaximumEventAgeInSeconds", -1)), range(60, 21601), "bounded event age")
            destination = config["DestinationConfig"]["OnFailure"]["Destination"]
            queue = self.queue_of(s, destination)
            role = s.props("SweeperFunction")["Role"]
            self.assertTrue(
                s.role_allows(role, "sqs:SendMessage", destination),
                "Lambda sends the failure record with the function's role",
            )
            self.assert_watched(s, queue)

    def test_invocations_the_scheduler_gave_up_on_reach_a_watched_queue(self):
        s = stack("prod")
        (schedule,) = s.of_type("AWS::Scheduler::Schedule").values()
        target = schedule["Properties"]["Target"]
        self.assertIn("RetryPolicy", target)
        destination = target["DeadLetterConfig"]["Arn"]
        queue = self.queue_of(s, destination)
        self.assertTrue(s.role_allows(target["RoleArn"], "sqs:SendMessage", destination))
        self.assert_watched(s, queue)

    def queue_of(self, s, arn):
        queues = [lid for lid in s.of_type("AWS::SQS::Queue") if s.getatt_token(lid, "Arn") == arn]
        self.assertEqual(len(queues), 1, f"{arn} is a queue of the stack")
        return queues[0]

    def assert_watched(self, s, queue):
        name = s.getatt_token(queue, "QueueName")
        watching = [
            lid for lid, a in s.alarms().items()
            if a["Properties"].get("Namespace") == "AWS/SQS"
            and a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and {"Name": "QueueName", "Value": name} in a["Properties"].get("Dimensions", [])
            and a["Properties"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            and float(a["Properties"]["Threshold"]) <= 1
        ]
        self.assertTrue(watching, f"an alarm fires on the first message in {queue}")


class Parameters(unittest.TestCase):
    def test_every_parameters_default_satisfies_its_own_constraints(self):
        errors = []
        for name, spec in sam_template()["Parameters"].items():
            if "Default" in spec:
                errors += check_parameter(name, spec, spec["Default"])
        self.assertEqual(errors, [])

    def test_timeouts_are_bounded_by_the_400_days_browsers_keep_a_cookie(self):
        spec = sam_template()["Parameters"]
        for name in ("IdleTimeoutSeconds", "AbsoluteTimeoutSeconds", "MaxIdleTimeoutSeconds", "MaxAbsoluteTimeoutSeconds"):
            self.assertIn(name, spec)
            self.assertEqual((spec[name].get("MinValue"), spec[name].get("MaxValue")), (1, 34560000), name)

    def test_the_api_gets_its_timeouts_and_ceilings(self):
        s = stack("prod")
        env = s.function_env("ApiFunction")
        for variable, parameter in {
            "SESSION_IDLE_TIMEOUT_SECONDS": "IdleTimeoutSeconds",
            "SESSION_ABSOLUTE_TIMEOUT_SECONDS": "AbsoluteTimeoutSeconds",
            "SESSION_MAX_IDLE_TIMEOUT_SECONDS": "MaxIdleTimeoutSeconds",
            "SESSION_MAX_ABSOLUTE_TIMEOUT_SECONDS": "MaxAbsoluteTimeoutSeconds",
        }.items():
            self.assertIn(parameter, s.parameters)
            self.assertEqual(env.get(variable), s.parameters[parameter], variable)

    def test_every_function_reports_metrics_to_its_stacks_namespace(self):
        for s in variant_stacks({}):
            for logical_id in BINARY:
                self.assertEqual(s.function_env(logical_id).get("METRICS_NAMESPACE"), f"SessionService/{s.name}", logical_id)


class Dashboard(unittest.TestCase):
    def test_the_dashboard_shows_only_and_all_of_what_the_functions_emit(self):
        for variant, params in VARIANTS.items():
            for s in variant_stacks(params):
                _, body = s.dashboard()
                shown = set()
                for title, namespace, metric, dims in dashboard_metrics(body):
                    if namespace.startswith("AWS/"):
                        continue
                    self.assertIsNone(emf_error(namespace, s, metric, dims), f"{variant}: {title}")
                    shown.add(metric)
                self.assertEqual(EMF_METRICS - shown, set(), f"{variant}: emitted but not shown")

    def test_the_dashboards_aws_metrics_name_this_stacks_resources(self):
        for door in FRONT_DOORS:
            s = stack("prod", (("FrontDoor", door),))
            _, body = s.dashboard()
            functions = {s.ref_token(lid) for lid in BINARY}
            queues = {s.getatt_token(lid, "QueueName") for lid in s.of_type("AWS::SQS::Queue")}
            for title, namespace, metric, dims in dashboard_metrics(body):
                if namespace == "AWS/Lambda":
                    self.assertIn(dims.get("FunctionName"), functions, title)
                elif namespace == "AWS/SQS":
                    self.assertIn(dims.get("QueueName"), queues, title)
                elif namespace == "AWS/ApiGateway":
                    self.assertEqual(dims.get("ApiId"), s.ref_token("HttpApi"), title)
                else:
                    self.assertEqual(namespace, f"SessionService/{s.name}", title)

    def test_the_front_door_widget_counts_the_front_door_in_use(self):
        expected = {
            "HttpApi": {("AWS/ApiGateway", m) for m in ("Count", "4xx", "5xx")},
            "FunctionUrl": {("AWS/Lambda", m) for m in ("UrlRequestCount", "Url4xxCount", "Url5xxCount")},
        }
        for door, metrics in expected.items():
            s = stack("prod", (("FrontDoor", door),))
            _, body = s.dashboard()
            shown = {(ns, m) for title, ns, m, _ in dashboard_metrics(body) if title == "Front door"}
            self.assertEqual(shown, metrics, door)
            if door == "FunctionUrl":
                for title, _, metric, dims in dashboard_metrics(body):
                    if metric.startswith("Url"):
                        self.assertEqual(dims, {"FunctionName": s.ref_token("ApiFunction")}, title)

    def test_the_alarm_widget_lists_every_alarm(self):
        for variant, params in VARIANTS.items():
            s = stack("prod", tuple(sorted(params.items())))
            _, body = s.dashboard()
            listed = [arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]]
            every = {s.getatt_token(lid, "Arn") for lid in s.alarms()}
            self.assertEqual(len(listed), len(set(listed)), "no alarm twice")
            self.assertEqual(set(listed), every, variant)

    def test_the_dashboard_url_output_opens_the_dashboard(self):
        s = stack("prod")
        logical_id, _ = s.dashboard()
        self.assertEqual(
            s.outputs.get("DashboardUrl"),
            f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
            f"#dashboards/dashboard/{s.ref_token(logical_id)}",
        )

    def test_the_readme_sketches_the_dashboards_layout(self):
        _, body = stack("prod").dashboard()
        sketch = layout_sketch(body)
        if sketch not in README.read_text():
            self.fail(f"README.md (Operate) should show the dashboard's layout:\n{sketch}")


if __name__ == "__main__":
    unittest.main()
