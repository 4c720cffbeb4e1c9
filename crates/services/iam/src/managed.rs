//! A few AWS managed policies, so roles that attach the usual ones (as SAM and
//! the Serverless Framework do) find them. Their documents are shortened to
//! the service-wide grants they amount to for the services Nimbus serves.

use crate::store::{ManagedPolicy, PolicyVersion};

const AWS_MANAGED: [(&str, &str, &str); 16] = [
    (
        "AdministratorAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    ),
    (
        "ReadOnlyAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","sqs:Get*","sqs:List*","sqs:ReceiveMessage","sns:Get*","sns:List*","dynamodb:Describe*","dynamodb:Get*","dynamodb:List*","dynamodb:Query","dynamodb:Scan","dynamodb:BatchGetItem","kinesis:Describe*","kinesis:List*","kinesis:Get*","lambda:Get*","lambda:List*","events:Describe*","events:List*","ssm:Describe*","ssm:Get*","ssm:List*","secretsmanager:Describe*","secretsmanager:List*","kms:Describe*","kms:List*","iam:Get*","iam:List*","ses:Get*","ses:List*"],"Resource":"*"}]}"#,
    ),
    (
        "AWSLambdaBasicExecutionRole",
        "/service-role/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:CreateLogGroup","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#,
    ),
    (
        "AWSLambdaSQSQueueExecutionRole",
        "/service-role/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:ReceiveMessage","sqs:DeleteMessage","sqs:GetQueueAttributes","logs:CreateLogGroup","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#,
    ),
    (
        "AWSLambdaDynamoDBExecutionRole",
        "/service-role/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["dynamodb:DescribeStream","dynamodb:GetRecords","dynamodb:GetShardIterator","dynamodb:ListStreams","logs:CreateLogGroup","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#,
    ),
    (
        "AWSLambdaKinesisExecutionRole",
        "/service-role/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kinesis:DescribeStream","kinesis:DescribeStreamSummary","kinesis:GetRecords","kinesis:GetShardIterator","kinesis:ListShards","kinesis:ListStreams","kinesis:SubscribeToShard","logs:CreateLogGroup","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#,
    ),
    (
        "AWSLambda_FullAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["lambda:*","iam:PassRole","iam:GetRole","iam:ListRoles","logs:*"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonS3FullAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","s3-object-lambda:*"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonS3ReadOnlyAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:List*","s3:Describe*","s3-object-lambda:Get*","s3-object-lambda:List*"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonDynamoDBFullAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["dynamodb:*"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonDynamoDBReadOnlyAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["dynamodb:BatchGetItem","dynamodb:Describe*","dynamodb:List*","dynamodb:GetItem","dynamodb:Query","dynamodb:Scan","dynamodb:PartiQLSelect","dynamodb:GetRecords","dynamodb:GetShardIterator"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonSQSFullAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:*"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonSNSFullAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sns:*"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonKinesisFullAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kinesis:*","Resource":"*"}]}"#,
    ),
    (
        "SecretsManagerReadWrite",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["secretsmanager:*","kms:Decrypt","kms:GenerateDataKey","kms:DescribeKey"],"Resource":"*"}]}"#,
    ),
    (
        "AmazonEventBridgeFullAccess",
        "/",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["events:*","schemas:*","scheduler:*","pipes:*"],"Resource":"*"}]}"#,
    ),
];

/// The built-in AWS managed policies (`arn:aws:iam::aws:policy/…`).
pub fn aws_managed() -> Vec<ManagedPolicy> {
    AWS_MANAGED
        .iter()
        .map(|(name, path, doc)| ManagedPolicy {
            name: (*name).to_owned(),
            id: format!(
                "ANPA{}",
                &crate::store::base32(name.as_bytes())[..17.min(name.len())]
            ),
            path: (*path).to_owned(),
            description: None,
            default_version: "v1".into(),
            versions: vec![PolicyVersion {
                id: "v1".into(),
                document: (*doc).to_owned(),
                created_ms: 0,
            }],
            next_version: 2,
            created_ms: 0,
            updated_ms: 0,
            tags: vec![],
            aws_managed: true,
        })
        .collect()
}
