"""SAM's own transform (aws-sam-translator), offline: template.yaml in, the CloudFormation template a
deploy would create out (JSON on stdout): the functions' roles with their policy templates expanded,
the rules, schedules, subscriptions and Lambda permissions that function events become.

    python sam-translate.py TEMPLATE [PARAMETERS_JSON]

PARAMETERS_JSON is an object of parameter values (pseudo parameters such as AWS::Region included).
Local paths in CodeUri and DefinitionUri become `s3://local/<path>`, as `sam validate` does, since
the transform takes only S3 locations; the local AWS reads the path back from the key.
Errors go to stderr with exit status 1.
"""

import json
import sys

import boto3
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser import parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse


def local_to_s3(props, key):
    value = props.get(key)
    if isinstance(value, str) and not value.startswith("s3://"):
        props[key] = "s3://local/" + value


def main():
    with open(sys.argv[1]) as f:
        template = yaml_parse(f.read())
    parameters = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    local_to_s3(template.get("Globals", {}).get("Function", {}), "CodeUri")
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            local_to_s3(props, "CodeUri")
        if resource.get("Type") == "AWS::Serverless::StateMachine":
            local_to_s3(props, "DefinitionUri")

    def managed_policy_map():
        # Only a policy given by name (not ARN) needs AWS's list of managed policies; none is here.
        raise SystemExit("sam-translate: a managed policy given by name needs IAM's policy list; give its ARN")

    region = parameters.get("AWS::Region", "us-east-1")
    translator = Translator(
        managed_policy_map=None,
        sam_parser=parser.Parser(),
        plugins=[],
        boto_session=boto3.session.Session(region_name=region),
    )
    try:
        out = translator.translate(
            sam_template=template, parameter_values=parameters, get_managed_policy_map=managed_policy_map
        )
    except InvalidDocumentException as e:
        causes = "; ".join(getattr(c, "message", str(c)) for c in e.causes)
        print(f"sam-translate: {causes}", file=sys.stderr)
        sys.exit(1)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
