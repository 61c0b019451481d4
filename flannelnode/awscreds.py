"""AWS credentials, found the way the AWS SDK (and so Packer's amazon builder) finds them.

botocore's own resolver chain: environment variables, profiles with role_arn, web identity, SSO,
the shared credentials and config files (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE,
AWS_PROFILE), credential_process, container credentials and the instance role from the EC2
metadata service (IMDSv2: token PUT, then the role GET). That last probe honours
AWS_EC2_METADATA_DISABLED and AWS_EC2_METADATA_SERVICE_ENDPOINT and is bounded by botocore's
AWS_METADATA_SERVICE_TIMEOUT (1 s) and AWS_METADATA_SERVICE_NUM_ATTEMPTS (1).

botocore is imported here only: the steps that need no AWS never pay for it.
"""

from __future__ import annotations

from .errors import FlannelnodeError

WHERE = (
    "environment variables, ~/.aws/credentials and ~/.aws/config (or AWS_SHARED_CREDENTIALS_FILE, "
    "AWS_CONFIG_FILE, AWS_PROFILE), container credentials, web identity, the instance role"
)


class AwsCredentialsError(FlannelnodeError):
    """Credentials are configured but broken (a partial key pair, a missing profile, a failing
    credential_process): exit 1 with what the SDK said."""


def find() -> str | None:
    """The SDK's name for where credentials were found (env, shared-credentials-file, iam-role,
    ...), or None when there are none. Deferred credentials (assume-role, SSO, web identity) count
    as found: the SDK, too, only uses them when a request is signed."""
    import botocore.exceptions
    import botocore.session

    try:
        credentials = botocore.session.Session().get_credentials()
    except botocore.exceptions.ProfileNotFound as exc:
        raise AwsCredentialsError(
            f"AWS credentials: {exc}; fix AWS_PROFILE or add the profile to ~/.aws/config"
        ) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsCredentialsError(
            f"AWS credentials are configured but cannot be loaded: {exc}"
        ) from None
    return None if credentials is None else str(credentials.method)
